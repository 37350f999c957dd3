#include "mics/data/token_shard.hpp"

#include <fcntl.h>
#include <glob.h>
#include <sys/mman.h>
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
#include <utility>

#include "mics/util/error.hpp"

namespace mics::data {

static_assert(std::endian::native == std::endian::little, "token shards are read in place: little-endian only");

namespace {

std::string errno_text() { return std::strerror(errno); }

// Closes a file descriptor on scope exit.
struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

TokenShard::TokenShard(const std::string& path) : path_(path) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. The kind is checked
  // on the open descriptor, so a file swapped in between cannot slip past.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw InputError("token shard " + path + ": cannot open: " + errno_text());
  FdCloser closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw InputError("token shard " + path + ": cannot stat: " + errno_text());
  if (S_ISDIR(st.st_mode)) throw InputError("token shard " + path + ": is a directory, not a token file");
  if (!S_ISREG(st.st_mode))
    throw InputError("token shard " + path + ": is not a regular file (a FIFO, device or socket cannot be mapped)");
  const auto file_bytes = static_cast<std::size_t>(st.st_size);
  if (file_bytes < kShardHeaderBytes) {
    throw InputError("token shard " + path + ": truncated: " + std::to_string(file_bytes) +
                " bytes is shorter than the 1024-byte header");
  }
  map_ = ::mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    throw InputError("token shard " + path + ": cannot mmap: " + errno_text());
  }
  map_bytes_ = file_bytes;
  try {
    std::array<std::int32_t, 3> header{};
    std::memcpy(header.data(), map_, sizeof(header));
    const std::int32_t magic = header[0], version = header[1], count = header[2];
    std::size_t token_bytes = 0;
    if (magic == kShardMagicU16) {
      if (version != kShardVersionU16)
        throw InputError("token shard " + path + ": bad version " + std::to_string(version) + " (magic " +
                    std::to_string(magic) + " needs version 1)");
      width_ = TokenWidth::U16;
      token_bytes = 2;
    } else if (magic == kShardMagicU32) {
      if (version != kShardVersionU32)
        throw InputError("token shard " + path + ": bad version " + std::to_string(version) + " (magic " +
                    std::to_string(magic) + " needs version 7)");
      width_ = TokenWidth::U32;
      token_bytes = 4;
    } else {
      throw InputError("token shard " + path + ": bad magic " + std::to_string(magic) + " (expected " +
                  std::to_string(kShardMagicU16) + " or " + std::to_string(kShardMagicU32) + ")");
    }
    if (count < 0) throw InputError("token shard " + path + ": negative token count " + std::to_string(count));
    num_tokens_ = static_cast<std::size_t>(count);
    const std::size_t expected = kShardHeaderBytes + token_bytes * num_tokens_;
    if (file_bytes != expected) {
      throw InputError("token shard " + path + ": size mismatch: header says " + std::to_string(num_tokens_) +
                  " tokens (" + std::to_string(expected) + " bytes) but the file has " +
                  std::to_string(file_bytes) + " bytes" + (file_bytes < expected ? " (truncated)" : ""));
    }
    tokens_ = static_cast<const unsigned char*>(map_) + kShardHeaderBytes;
  } catch (...) {
    unmap();
    throw;
  }
}

TokenShard::TokenShard(TokenShard&& other) noexcept
    : path_(std::move(other.path_)),
      map_(std::exchange(other.map_, nullptr)),
      map_bytes_(std::exchange(other.map_bytes_, 0)),
      tokens_(std::exchange(other.tokens_, nullptr)),
      num_tokens_(std::exchange(other.num_tokens_, 0)),
      width_(other.width_) {}

TokenShard& TokenShard::operator=(TokenShard&& other) noexcept {
  if (this != &other) {
    unmap();
    path_ = std::move(other.path_);
    map_ = std::exchange(other.map_, nullptr);
    map_bytes_ = std::exchange(other.map_bytes_, 0);
    tokens_ = std::exchange(other.tokens_, nullptr);
    num_tokens_ = std::exchange(other.num_tokens_, 0);
    width_ = other.width_;
  }
  return *this;
}

TokenShard::~TokenShard() { unmap(); }

void TokenShard::unmap() noexcept {
  if (map_ != nullptr) ::munmap(map_, map_bytes_);
  map_ = nullptr;
  map_bytes_ = 0;
  tokens_ = nullptr;
}

std::uint32_t TokenShard::token(std::size_t i) const {
  if (width_ == TokenWidth::U16) {
    std::uint16_t t;
    std::memcpy(&t, tokens_ + 2 * i, 2);
    return t;
  }
  std::uint32_t t;
  std::memcpy(&t, tokens_ + 4 * i, 4);
  return t;
}

void TokenShard::copy(std::size_t begin, std::size_t count, std::int32_t* out) const {
  if (width_ == TokenWidth::U16) {
    for (std::size_t i = 0; i < count; ++i) {
      std::uint16_t t;
      std::memcpy(&t, tokens_ + 2 * (begin + i), 2);
      out[i] = t;
    }
  } else {
    for (std::size_t i = 0; i < count; ++i) {
      std::uint32_t t;
      std::memcpy(&t, tokens_ + 4 * (begin + i), 4);
      out[i] = static_cast<std::int32_t>(t);
    }
  }
}

void TokenShard::check_vocab(std::uint32_t vocab) const {
  for (std::size_t i = 0; i < num_tokens_; ++i) {
    const std::uint32_t t = token(i);
    if (t >= vocab) {
      throw InputError("token shard " + path_ + ": token " + std::to_string(t) + " at position " + std::to_string(i) +
                  " is outside the model vocabulary of " + std::to_string(vocab));
    }
  }
}

std::vector<std::string> match_shards(const std::string& pattern) {
  glob_t matches{};
  const int rc = ::glob(pattern.c_str(), 0, nullptr, &matches);
  std::unique_ptr<glob_t, void (*)(glob_t*)> owner(&matches, ::globfree);
  if (rc == GLOB_NOMATCH) throw InputError("token shards: no files match the pattern " + pattern);
  if (rc != 0) throw InputError("token shards: cannot expand the pattern " + pattern);
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
    throw InputError("token shard " + path + ": " + std::to_string(tokens.size()) + " tokens do not fit one shard");
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
        throw InputError("token shard " + path + ": token " + std::to_string(tokens[i]) + " at position " +
                    std::to_string(i) + " does not fit 16 bits");
      narrow[i] = static_cast<std::uint16_t>(tokens[i]);
    }
    body = reinterpret_cast<const char*>(narrow.data());
    body_bytes = narrow.size() * sizeof(std::uint16_t);
  }

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw InputError("token shard " + path + ": cannot open for writing");
  out.write(reinterpret_cast<const char*>(header.data()), kShardHeaderBytes);
  out.write(body, static_cast<std::streamsize>(body_bytes));
  out.close();
  if (!out) throw InputError("token shard " + path + ": write failed");
}

std::vector<std::string> write_token_shards(const std::string& prefix, std::span<const std::uint32_t> tokens,
                                            std::size_t shard_tokens) {
  if (shard_tokens == 0) throw InputError("token shards " + prefix + ": shard size must be at least one token");
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
