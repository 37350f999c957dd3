#include "store.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <set>

#include "mics/log/log.hpp"
#include "mics/util/error.hpp"

namespace mics::checkpoint {

namespace fs = std::filesystem;

namespace {
// "step_<N>" or "step_<N>.partial" -> N; nullopt for anything else.
std::optional<std::int64_t> parse_step(std::string_view name, bool& partial) {
  constexpr std::string_view prefix = "step_";
  if (name.substr(0, prefix.size()) != prefix) return std::nullopt;
  name.remove_prefix(prefix.size());
  const std::string_view suffix = kPartialSuffix;
  partial = name.size() > suffix.size() && name.substr(name.size() - suffix.size()) == suffix;
  if (partial) name.remove_suffix(suffix.size());
  std::int64_t step = 0;
  const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), step);
  if (ec != std::errc() || end != name.data() + name.size() || step < 0) return std::nullopt;
  return step;
}
}  // namespace

std::string step_dir_name(std::int64_t step) { return "step_" + std::to_string(step); }

std::vector<Entry> list_checkpoints(const fs::path& run_dir) {
  std::vector<Entry> entries;
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec)) return entries;
  for (const auto& item : fs::directory_iterator(run_dir, ec)) {
    if (!item.is_directory(ec)) continue;
    bool partial = false;
    const std::optional<std::int64_t> step = parse_step(item.path().filename().string(), partial);
    if (!step) continue;
    entries.push_back(Entry{item.path(), *step, !partial});
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.step != b.step ? a.step < b.step : a.committed > b.committed;
  });
  return entries;
}

std::optional<fs::path> read_latest(const fs::path& run_dir) {
  std::ifstream in(run_dir / kLatestFileName);
  std::string name;
  if (!in || !std::getline(in, name)) return std::nullopt;
  bool partial = false;
  if (!parse_step(name, partial) || partial) return std::nullopt;
  return run_dir / name;
}

std::optional<std::string> malformed_latest(const fs::path& run_dir) {
  const fs::path path = run_dir / kLatestFileName;
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(path, ec)) || read_latest(run_dir)) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  std::string text(200, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(in ? text.size() : static_cast<std::size_t>(std::max<std::streamsize>(in.gcount(), 0)));
  return text;
}

fs::path state_file(const fs::path& checkpoint) {
  std::error_code ec;
  if (fs::is_regular_file(checkpoint, ec)) return checkpoint;
  return checkpoint / kStateFileName;
}

namespace store {

void sync_path(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError("cannot open " + path.string() + " to sync it: " + std::strerror(errno));
  const int rc = ::fsync(fd);
  const int saved = errno;
  ::close(fd);
  if (rc != 0) throw InputError("fsync of " + path.string() + " failed: " + std::strerror(saved));
}

void commit(const fs::path& partial_dir, const fs::path& final_dir, const fs::path& run_dir) {
  for (const auto& item : fs::directory_iterator(partial_dir))
    if (item.is_regular_file()) sync_path(item.path());
  sync_path(partial_dir);
  std::error_code ec;
  // A step directory of the same step (a rerun from an older `latest`) is replaced by the new one.
  if (fs::exists(final_dir, ec)) fs::remove_all(final_dir);
  fs::rename(partial_dir, final_dir);
  sync_path(run_dir);

  const fs::path temp = run_dir / (std::string(kLatestFileName) + ".tmp");
  {
    std::ofstream out(temp, std::ios::trunc);
    out << final_dir.filename().string() << '\n';
    out.close();
    if (!out) throw InputError("cannot write " + temp.string());
  }
  sync_path(temp);
  fs::rename(temp, run_dir / kLatestFileName);
  sync_path(run_dir);
}

void prune(const fs::path& run_dir, const Retention& retention, std::int64_t keep_this) {
  const std::vector<Entry> entries = list_checkpoints(run_dir);
  std::vector<std::int64_t> committed;
  for (const Entry& e : entries)
    if (e.committed) committed.push_back(e.step);
  std::set<std::int64_t> kept{keep_this};
  const std::size_t keep = static_cast<std::size_t>(std::max(retention.keep, 1));
  for (std::size_t i = committed.size() > keep ? committed.size() - keep : 0; i < committed.size(); ++i)
    kept.insert(committed[i]);
  for (const Entry& e : entries) {
    const bool archival = e.committed && retention.keep_every > 0 && e.step % retention.keep_every == 0;
    // Partial directories older than the new commit were abandoned by a crashed write.
    const bool remove = e.committed ? !(kept.count(e.step) || archival) : e.step < keep_this;
    if (!remove) continue;
    std::error_code ec;
    fs::remove_all(e.path, ec);
    if (ec)
      MICS_LOG(warning) << "checkpoint: cannot remove " << e.path.string() << ": " << ec.message();
    else
      MICS_LOG(info) << "checkpoint: removed " << e.path.string();
  }
}

}  // namespace store
}  // namespace mics::checkpoint
