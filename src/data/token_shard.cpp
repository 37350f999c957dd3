#include "mics/data/token_shard.hpp"

#include <fcntl.h>
#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <utility>

#include "mics/util/error.hpp"
#include "mics/util/printable.hpp"

namespace mics::data {

static_assert(std::endian::native == std::endian::little, "token shards are read as stored: little-endian only");

namespace {

std::string errno_text() { return std::strerror(errno); }

}  // namespace

TokenShard::TokenShard(const std::string& path) : path_(path), shown_(printable(path)) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. The kind is checked
  // on the open descriptor, so a file swapped in between cannot slip past.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw InputError("token shard " + shown_ + ": cannot open: " + errno_text());
  fd_ = fd;
  try {
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw InputError("token shard " + shown_ + ": cannot stat: " + errno_text());
    if (S_ISDIR(st.st_mode)) throw InputError("token shard " + shown_ + ": is a directory, not a token file");
    if (!S_ISREG(st.st_mode))
      throw InputError("token shard " + shown_ + ": is not a regular file (a FIFO, device or socket)");
    file_bytes_ = static_cast<std::size_t>(st.st_size);
    if (file_bytes_ < kShardHeaderBytes) {
      throw InputError("token shard " + shown_ + ": truncated: " + std::to_string(file_bytes_) +
                       " bytes is shorter than the 1024-byte header");
    }
    std::array<std::int32_t, 3> header{};
    read_bytes(0, sizeof(header), header.data());
    const std::int32_t magic = header[0], version = header[1], count = header[2];
    std::size_t token_bytes = 0;
    if (magic == kShardMagicU16) {
      if (version != kShardVersionU16)
        throw InputError("token shard " + shown_ + ": bad version " + std::to_string(version) + " (magic " +
                         std::to_string(magic) + " needs version 1)");
      width_ = TokenWidth::U16;
      token_bytes = 2;
    } else if (magic == kShardMagicU32) {
      if (version != kShardVersionU32)
        throw InputError("token shard " + shown_ + ": bad version " + std::to_string(version) + " (magic " +
                         std::to_string(magic) + " needs version 7)");
      width_ = TokenWidth::U32;
      token_bytes = 4;
    } else {
      throw InputError("token shard " + shown_ + ": bad magic " + std::to_string(magic) + " (expected " +
                       std::to_string(kShardMagicU16) + " or " + std::to_string(kShardMagicU32) + ")");
    }
    if (count < 0) throw InputError("token shard " + shown_ + ": negative token count " + std::to_string(count));
    num_tokens_ = static_cast<std::size_t>(count);
    const std::size_t expected = kShardHeaderBytes + token_bytes * num_tokens_;
    if (file_bytes_ != expected) {
      throw InputError("token shard " + shown_ + ": size mismatch: header says " + std::to_string(num_tokens_) +
                       " tokens (" + std::to_string(expected) + " bytes) but the file has " +
                       std::to_string(file_bytes_) + " bytes" + (file_bytes_ < expected ? " (truncated)" : ""));
    }
  } catch (...) {
    close_file();
    throw;
  }
}

TokenShard::TokenShard(TokenShard&& other) noexcept
    : path_(std::move(other.path_)),
      shown_(std::move(other.shown_)),
      fd_(std::exchange(other.fd_, -1)),
      file_bytes_(std::exchange(other.file_bytes_, 0)),
      num_tokens_(std::exchange(other.num_tokens_, 0)),
      width_(other.width_) {}

TokenShard& TokenShard::operator=(TokenShard&& other) noexcept {
  if (this != &other) {
    close_file();
    path_ = std::move(other.path_);
    shown_ = std::move(other.shown_);
    fd_ = std::exchange(other.fd_, -1);
    file_bytes_ = std::exchange(other.file_bytes_, 0);
    num_tokens_ = std::exchange(other.num_tokens_, 0);
    width_ = other.width_;
  }
  return *this;
}

TokenShard::~TokenShard() { close_file(); }

void TokenShard::close_file() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void TokenShard::read_bytes(std::size_t offset, std::size_t bytes, void* out) const {
  auto* dst = static_cast<unsigned char*>(out);
  std::size_t done = 0;
  while (done < bytes) {
    const ssize_t got = ::pread(fd_, dst + done, bytes - done, static_cast<off_t>(offset + done));
    if (got > 0) {
      done += static_cast<std::size_t>(got);
      continue;
    }
    if (got < 0 && errno == EINTR) continue;
    const std::string where = " (reading " + std::to_string(bytes) + " bytes at offset " + std::to_string(offset) + ")";
    if (got < 0) throw InputError("token shard " + shown_ + ": read failed" + where + ": " + errno_text());
    // End of file inside a range that existed at open: someone truncated or rewrote the file.
    struct stat st {};
    const std::string now = ::fstat(fd_, &st) == 0 ? std::to_string(st.st_size) : "an unknown number of";
    throw InputError("token shard " + shown_ + " shrank from " + std::to_string(file_bytes_) + " to " + now +
                     " bytes while the job ran" + where);
  }
}

template <class Sink>
void TokenShard::read_tokens(std::size_t begin, std::size_t count, Sink&& sink) const {
  // Through a bounded buffer on the stack: one pread for a training sequence of up to 8K tokens.
  std::array<unsigned char, 32768> buffer;
  const std::size_t width = width_ == TokenWidth::U16 ? 2 : 4;
  const std::size_t per_chunk = buffer.size() / width;
  for (std::size_t first = 0; first < count; first += per_chunk) {
    const std::size_t n = std::min(per_chunk, count - first);
    read_bytes(kShardHeaderBytes + width * (begin + first), width * n, buffer.data());
    if (width_ == TokenWidth::U16) {
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t t;
        std::memcpy(&t, buffer.data() + 2 * i, 2);
        sink(first + i, static_cast<std::uint32_t>(t));
      }
    } else {
      for (std::size_t i = 0; i < n; ++i) {
        std::uint32_t t;
        std::memcpy(&t, buffer.data() + 4 * i, 4);
        sink(first + i, t);
      }
    }
  }
}

void TokenShard::check_range(std::size_t begin, std::size_t count) const {
  if (begin > num_tokens_ || count > num_tokens_ - begin)
    throw InternalError("token shard " + shown_ + ": tokens [" + std::to_string(begin) + ", " +
                        std::to_string(begin + count) + ") of " + std::to_string(num_tokens_));
}

std::uint32_t TokenShard::token(std::size_t i) const {
  check_range(i, 1);
  std::uint32_t value = 0;
  read_tokens(i, 1, [&](std::size_t, std::uint32_t t) { value = t; });
  return value;
}

void TokenShard::copy(std::size_t begin, std::size_t count, std::int32_t* out) const {
  check_range(begin, count);
  read_tokens(begin, count, [out](std::size_t k, std::uint32_t t) { out[k] = static_cast<std::int32_t>(t); });
}

void TokenShard::copy_sequence(std::size_t begin, std::size_t count, std::int32_t* inputs,
                               std::int32_t* targets) const {
  check_range(begin, count + 1);
  read_tokens(begin, count + 1, [inputs, targets, count](std::size_t k, std::uint32_t t) {
    if (k < count) inputs[k] = static_cast<std::int32_t>(t);
    if (k > 0) targets[k - 1] = static_cast<std::int32_t>(t);
  });
}

void TokenShard::check_vocab(std::uint32_t vocab) const {
  std::optional<std::pair<std::size_t, std::uint32_t>> bad;
  read_tokens(0, num_tokens_, [&](std::size_t i, std::uint32_t t) {
    if (t >= vocab && !bad) bad.emplace(i, t);
  });
  if (bad) {
    throw InputError("token shard " + shown_ + ": token " + std::to_string(bad->second) + " at position " +
                     std::to_string(bad->first) + " is outside the model vocabulary of " + std::to_string(vocab));
  }
}

std::vector<std::string> match_shards(const std::string& pattern) {
  glob_t matches{};
  const int rc = ::glob(pattern.c_str(), 0, nullptr, &matches);
  std::unique_ptr<glob_t, void (*)(glob_t*)> owner(&matches, ::globfree);
  if (rc == GLOB_NOMATCH) throw InputError("token shards: no files match the pattern " + printable(pattern));
  if (rc != 0) throw InputError("token shards: cannot expand the pattern " + printable(pattern));
  std::vector<std::string> paths(matches.gl_pathv, matches.gl_pathv + matches.gl_pathc);
  std::sort(paths.begin(), paths.end());  // glob sorts by locale; the order must not depend on it
  return paths;
}

TokenDataset::TokenDataset(const std::string& pattern) : pattern_(pattern) {
  for (const std::string& path : match_shards(pattern)) shards_.emplace_back(path);
}

std::size_t TokenDataset::total_tokens() const {
  std::size_t total = 0;
  for (const TokenShard& shard : shards_) total += shard.size();
  return total;
}

void TokenDataset::check_vocab(std::uint32_t vocab) const {
  for (const TokenShard& shard : shards_) shard.check_vocab(vocab);
}

void write_token_shard(const std::string& path, std::span<const std::uint32_t> tokens, TokenWidth width) {
  if (tokens.size() > static_cast<std::size_t>(INT32_MAX))
    throw InputError("token shard " + printable(path) + ": " + std::to_string(tokens.size()) + " tokens do not fit one shard");
  std::array<std::int32_t, kShardHeaderInts> header{};
  header[0] = width == TokenWidth::U16 ? kShardMagicU16 : kShardMagicU32;
  header[1] = width == TokenWidth::U16 ? kShardVersionU16 : kShardVersionU32;
  header[2] = static_cast<std::int32_t>(tokens.size());

  // The body as written: narrowed to 16 bits (a copy), or the tokens themselves.
  std::vector<std::uint16_t> narrow;
  const char* body = reinterpret_cast<const char*>(tokens.data());
  std::size_t body_bytes = tokens.size_bytes();
  if (width == TokenWidth::U16) {
    narrow.resize(tokens.size());
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (tokens[i] > 0xFFFFu)
        throw InputError("token shard " + printable(path) + ": token " + std::to_string(tokens[i]) + " at position " +
                    std::to_string(i) + " does not fit 16 bits");
      narrow[i] = static_cast<std::uint16_t>(tokens[i]);
    }
    body = reinterpret_cast<const char*>(narrow.data());
    body_bytes = narrow.size() * sizeof(std::uint16_t);
  }

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw InputError("token shard " + printable(path) + ": cannot open for writing");
  out.write(reinterpret_cast<const char*>(header.data()), kShardHeaderBytes);
  out.write(body, static_cast<std::streamsize>(body_bytes));
  out.close();
  if (!out) throw InputError("token shard " + printable(path) + ": write failed");
}

std::vector<std::string> write_token_shards(const std::string& prefix, std::span<const std::uint32_t> tokens,
                                            std::size_t shard_tokens) {
  if (shard_tokens == 0) throw InputError("token shards " + printable(prefix) + ": shard size must be at least one token");
  const bool fits_u16 = std::all_of(tokens.begin(), tokens.end(), [](std::uint32_t t) { return t <= 0xFFFFu; });
  const TokenWidth width = fits_u16 ? TokenWidth::U16 : TokenWidth::U32;
  std::vector<std::string> paths;
  for (std::size_t begin = 0; begin < tokens.size(); begin += shard_tokens) {
    char suffix[32];
    std::snprintf(suffix, sizeof(suffix), "_%06zu.bin", paths.size());
    paths.push_back(prefix + suffix);
    write_token_shard(paths.back(), tokens.subspan(begin, std::min(shard_tokens, tokens.size() - begin)), width);
  }
  return paths;
}

}  // namespace mics::data
