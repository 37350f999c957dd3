// llm.c token shards: a 256 x int32 little-endian header, then the tokens.
//   magic 20240520, version 1: uint16 tokens (file size = 1024 + 2*N)
//   magic 20240801, version 7: uint32 tokens (file size = 1024 + 4*N)
// A shard is read with pread from a descriptor held open, never mapped: a file truncated while the job
// runs then gives a short read, raised as an InputError naming the file, not a SIGBUS that kills the
// rank without a word. A data set is every file a glob pattern matches, sorted.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace mics::data {

inline constexpr std::int32_t kShardMagicU16 = 20240520;
inline constexpr std::int32_t kShardVersionU16 = 1;
inline constexpr std::int32_t kShardMagicU32 = 20240801;
inline constexpr std::int32_t kShardVersionU32 = 7;
inline constexpr std::size_t kShardHeaderInts = 256;
inline constexpr std::size_t kShardHeaderBytes = kShardHeaderInts * sizeof(std::int32_t);

enum class TokenWidth { U16, U32 };

// One shard, held open read-only for as long as the object lives (move-only). Every read throws
// InputError naming the file, the offset and the sizes at open and now if the file shrank since.
class TokenShard {
 public:
  // Validates magic, version and size; throws mics::Error naming the file and the problem.
  explicit TokenShard(const std::string& path);
  TokenShard(TokenShard&& other) noexcept;
  TokenShard& operator=(TokenShard&& other) noexcept;
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;
  ~TokenShard();

  const std::string& path() const { return path_; }
  std::size_t size() const { return num_tokens_; }  // tokens
  TokenWidth width() const { return width_; }
  std::uint32_t token(std::size_t i) const;
  // Copies tokens [begin, begin + count) into out, widened to int32.
  void copy(std::size_t begin, std::size_t count, std::int32_t* out) const;
  // One training sequence in one read: tokens [begin, begin + count] as inputs = the first count,
  // targets = the last count.
  void copy_sequence(std::size_t begin, std::size_t count, std::int32_t* inputs, std::int32_t* targets) const;
  // Throws mics::Error naming the file, position and value of the first token >= vocab.
  void check_vocab(std::uint32_t vocab) const;

 private:
  void close_file() noexcept;
  void read_bytes(std::size_t offset, std::size_t bytes, void* out) const;
  // Calls sink(k, token) for k = 0..count-1, token = token(begin + k).
  template <class Sink>
  void read_tokens(std::size_t begin, std::size_t count, Sink&& sink) const;
  void check_range(std::size_t begin, std::size_t count) const;

  std::string path_;
  std::string shown_;  // path_ as messages quote it (printable)
  int fd_ = -1;
  std::size_t file_bytes_ = 0;  // at open
  std::size_t num_tokens_ = 0;
  TokenWidth width_ = TokenWidth::U16;
};

// The files matching a glob(3) pattern, sorted; throws mics::Error naming the pattern if none match.
std::vector<std::string> match_shards(const std::string& pattern);

// Every shard of one split (train or val), in sorted file order.
class TokenDataset {
 public:
  explicit TokenDataset(const std::string& pattern);
  const std::string& pattern() const { return pattern_; }
  const std::vector<TokenShard>& shards() const { return shards_; }
  std::size_t total_tokens() const;
  void check_vocab(std::uint32_t vocab) const;  // every shard

 private:
  std::string pattern_;
  std::vector<TokenShard> shards_;
};

// Writes one shard (U16 needs every token < 65536; throws mics::Error naming the file otherwise).
void write_token_shard(const std::string& path, std::span<const std::uint32_t> tokens,
                       TokenWidth width = TokenWidth::U16);

// Writes tokens as PREFIX_000000.bin, PREFIX_000001.bin, ... of at most shard_tokens each; returns the
// paths. The width is U16 when every token fits, else U32.
std::vector<std::string> write_token_shards(const std::string& prefix, std::span<const std::uint32_t> tokens,
                                            std::size_t shard_tokens);

}  // namespace mics::data
