// llm.c token shards: round trips in both widths and one message per kind of bad file.
#include "catch.hpp"
#include <cstdint>
#include <cstring>
#include <fstream>
#include <vector>

#include "mics/data/token_shard.hpp"
#include "mics/util/error.hpp"
#include "temp_dir.hpp"

using namespace mics::data;
using mics::test::TempDir;

namespace {

// A shard written byte by byte, independent of the writer under test.
void write_raw(const std::string& path, std::int32_t magic, std::int32_t version, std::int32_t count,
               std::size_t payload_bytes) {
  std::vector<std::int32_t> header(256, 0);
  header[0] = magic;
  header[1] = version;
  header[2] = count;
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(header.data()), 1024);
  const std::vector<char> payload(payload_bytes, 1);
  out.write(payload.data(), static_cast<std::streamsize>(payload.size()));
}

}  // namespace

TEST_CASE("token shard: uint16 round trip with the llm.c layout", "[data][shard]") {
  TempDir dir("shard");
  const std::vector<std::uint32_t> tokens = {0, 1, 50256, 65535, 7};
  const std::string path = dir.file("a.bin");
  write_token_shard(path, tokens);
  CHECK(std::filesystem::file_size(path) == 1024 + 2 * tokens.size());

  // The header and payload as llm.c lays them out.
  std::ifstream in(path, std::ios::binary);
  std::vector<std::int32_t> header(256);
  in.read(reinterpret_cast<char*>(header.data()), 1024);
  CHECK(header[0] == 20240520);
  CHECK(header[1] == 1);
  CHECK(header[2] == 5);
  std::uint16_t third = 0;
  in.seekg(1024 + 4);
  in.read(reinterpret_cast<char*>(&third), 2);
  CHECK(third == 50256);

  const TokenShard shard(path);
  REQUIRE(shard.size() == tokens.size());
  CHECK(shard.width() == TokenWidth::U16);
  for (std::size_t i = 0; i < tokens.size(); ++i) CHECK(shard.token(i) == tokens[i]);
  std::int32_t copied[3];
  shard.copy(2, 3, copied);
  CHECK(copied[0] == 50256);
  CHECK(copied[1] == 65535);
  CHECK(copied[2] == 7);
}

TEST_CASE("token shard: uint32 variant (magic 20240801, version 7)", "[data][shard]") {
  TempDir dir("shard32");
  const std::vector<std::uint32_t> tokens = {3, 100000, 200000};
  const std::string path = dir.file("wide.bin");
  write_token_shard(path, tokens, TokenWidth::U32);
  CHECK(std::filesystem::file_size(path) == 1024 + 4 * tokens.size());
  const TokenShard shard(path);
  CHECK(shard.width() == TokenWidth::U32);
  REQUIRE(shard.size() == 3);
  CHECK(shard.token(1) == 100000);
  CHECK_THROWS_WITH(write_token_shard(dir.file("narrow.bin"), tokens, TokenWidth::U16),
                    Catch::Contains("narrow.bin") && Catch::Contains("does not fit 16 bits"));
}

TEST_CASE("token shard: bad files name the file and the problem", "[data][shard]") {
  TempDir dir("badshard");
  const std::string magic = dir.file("magic.bin");
  write_raw(magic, 12345, 1, 4, 8);
  CHECK_THROWS_WITH(TokenShard(magic), Catch::Contains(magic) && Catch::Contains("bad magic 12345"));

  const std::string version = dir.file("version.bin");
  write_raw(version, 20240520, 2, 4, 8);
  CHECK_THROWS_WITH(TokenShard(version), Catch::Contains(version) && Catch::Contains("bad version 2"));
  const std::string version32 = dir.file("version32.bin");
  write_raw(version32, 20240801, 1, 4, 16);
  CHECK_THROWS_WITH(TokenShard(version32), Catch::Contains(version32) && Catch::Contains("bad version 1"));

  const std::string truncated = dir.file("truncated.bin");
  write_raw(truncated, 20240520, 1, 10, 12);
  CHECK_THROWS_WITH(TokenShard(truncated), Catch::Contains(truncated) && Catch::Contains("size mismatch") &&
                                               Catch::Contains("truncated"));
  const std::string too_long = dir.file("long.bin");
  write_raw(too_long, 20240520, 1, 2, 6);
  CHECK_THROWS_WITH(TokenShard(too_long), Catch::Contains(too_long) && Catch::Contains("size mismatch"));

  const std::string header_only = dir.file("short.bin");
  std::ofstream(header_only, std::ios::binary) << "abc";
  CHECK_THROWS_WITH(TokenShard(header_only), Catch::Contains(header_only) && Catch::Contains("truncated"));

  CHECK_THROWS_WITH(TokenShard(dir.file("missing.bin")),
                    Catch::Contains("missing.bin") && Catch::Contains("cannot open"));
}

TEST_CASE("token shard: a token outside the vocabulary is caught when asked", "[data][shard]") {
  TempDir dir("vocab");
  const std::string path = dir.file("v.bin");
  write_token_shard(path, std::vector<std::uint32_t>{1, 2, 255, 256, 3});
  const TokenShard shard(path);
  CHECK_NOTHROW(shard.check_vocab(257));
  CHECK_THROWS_WITH(shard.check_vocab(256), Catch::Contains(path) && Catch::Contains("token 256 at position 3"));
}

TEST_CASE("token dataset: a glob of shards, sorted; no match names the pattern", "[data][shard]") {
  TempDir dir("glob");
  // Written out of order: the data set must still read 000000, 000001, 000002.
  for (int i : {2, 0, 1}) {
    char name[32];
    std::snprintf(name, sizeof(name), "train_%06d.bin", i);
    write_token_shard(dir.file(name), std::vector<std::uint32_t>(static_cast<std::size_t>(10 + i), static_cast<std::uint32_t>(i)));
  }
  write_token_shard(dir.file("val_000000.bin"), std::vector<std::uint32_t>(5, 9));
  const TokenDataset train(dir.file("train_*.bin"));
  REQUIRE(train.shards().size() == 3);
  for (std::uint32_t i = 0; i < 3; ++i) {
    CHECK(train.shards()[i].size() == 10 + i);
    CHECK(train.shards()[i].token(0) == i);
  }
  CHECK(train.total_tokens() == 33);

  const std::string pattern = dir.file("test_*.bin");
  CHECK_THROWS_WITH(TokenDataset(pattern), Catch::Contains("no files match") && Catch::Contains(pattern));
}

TEST_CASE("token shards: writer splits a stream into numbered shards", "[data][shard]") {
  TempDir dir("split");
  std::vector<std::uint32_t> tokens(25);
  for (std::uint32_t i = 0; i < 25; ++i) tokens[i] = i;
  const auto paths = write_token_shards(dir.file("train"), tokens, 10);
  REQUIRE(paths.size() == 3);
  CHECK(paths[2] == dir.file("train_000002.bin"));
  const TokenDataset data(dir.file("train_*.bin"));
  CHECK(data.shards()[2].size() == 5);
  CHECK(data.shards()[2].token(4) == 24);
}

TEST_CASE("token shard: a file cut short after opening is an InputError, not a SIGBUS", "[data][shard]") {
  TempDir dir("shard");
  std::vector<std::uint32_t> tokens(5000);
  for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<std::uint32_t>(i);
  const std::string path = dir.file("cut.bin");
  write_token_shard(path, tokens);
  const TokenShard shard(path);
  std::vector<std::int32_t> inputs(64), targets(64);
  shard.copy_sequence(100, 64, inputs.data(), targets.data());
  CHECK(inputs[0] == 100);
  CHECK(targets[63] == 164);

  std::filesystem::resize_file(path, 1024 + 2 * 1000);  // tokens 1000.. are gone
  shard.copy_sequence(900, 64, inputs.data(), targets.data());  // before the cut: still readable
  CHECK(targets[63] == 964);
  try {
    shard.copy_sequence(3000, 64, inputs.data(), targets.data());
    FAIL("read past the cut");
  } catch (const mics::InputError& e) {
    CHECK(std::string(e.what()) == "token shard " + path + " shrank from 11024 to 3024 bytes while the job ran "
                                   "(reading 130 bytes at offset 7024)");
  }
  CHECK_THROWS_AS(shard.token(4999), mics::InputError);
  CHECK_THROWS_AS(shard.check_vocab(50304), mics::InputError);
}
