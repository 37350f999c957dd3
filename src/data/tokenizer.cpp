#include "mics/data/tokenizer.hpp"

#include <array>
#include <fstream>

#include "mics/util/error.hpp"

namespace mics::data {

Tokenizer Tokenizer::bytes(int vocab) {
  if (vocab < 1 || vocab > 256)
    throw InputError("a byte-level tokenizer has at most 256 tokens, the model has " + std::to_string(vocab) +
                     " (give --tokenizer FILE)");
  Tokenizer t;
  for (int i = 0; i < vocab; ++i) t.pieces_.emplace_back(1, static_cast<char>(i));
  return t;
}

Tokenizer Tokenizer::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("tokenizer " + path + ": cannot open");
  std::array<std::uint32_t, 256> header{};
  if (!in.read(reinterpret_cast<char*>(header.data()), sizeof(header)))
    throw InputError("tokenizer " + path + ": shorter than its 1024-byte header");
  if (header[0] != kTokenizerMagic)
    throw InputError("tokenizer " + path + ": bad magic " + std::to_string(header[0]) + " (expected " +
                     std::to_string(kTokenizerMagic) + ", llm.c's gpt2_tokenizer.bin format)");
  if (header[1] != 1 && header[1] != 2)
    throw InputError("tokenizer " + path + ": unsupported version " + std::to_string(header[1]) + " (1 or 2)");
  Tokenizer t;
  const std::uint32_t vocab = header[2];
  if (header[1] == 2) t.eot_ = static_cast<std::int32_t>(header[3]);
  t.pieces_.reserve(vocab);
  for (std::uint32_t i = 0; i < vocab; ++i) {
    unsigned char length = 0;
    std::string piece;
    if (!in.read(reinterpret_cast<char*>(&length), 1) ||
        (piece.resize(length), !in.read(piece.data(), static_cast<std::streamsize>(length))))
      throw InputError("tokenizer " + path + ": truncated at token " + std::to_string(i) + " of " +
                       std::to_string(vocab));
    t.pieces_.push_back(std::move(piece));
  }
  return t;
}

const std::string& Tokenizer::decode(std::int32_t token) const {
  if (token < 0 || static_cast<std::size_t>(token) >= pieces_.size())
    throw InputError("token " + std::to_string(token) + " is outside the tokenizer's vocabulary of " +
                     std::to_string(pieces_.size()));
  return pieces_[static_cast<std::size_t>(token)];
}

std::string Tokenizer::decode(const std::vector<std::int32_t>& tokens) const {
  std::string text;
  for (std::int32_t t : tokens) text += decode(t);
  return text;
}

void write_tokenizer(const std::string& path, const std::vector<std::string>& pieces, std::int32_t eot) {
  std::array<std::uint32_t, 256> header{};
  header[0] = kTokenizerMagic;
  header[1] = 2;
  header[2] = static_cast<std::uint32_t>(pieces.size());
  header[3] = static_cast<std::uint32_t>(eot);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(header.data()), sizeof(header));
  for (const std::string& piece : pieces) {
    if (piece.size() > 255) throw InputError("tokenizer " + path + ": a piece longer than 255 bytes");
    const auto length = static_cast<unsigned char>(piece.size());
    out.write(reinterpret_cast<const char*>(&length), 1);
    out.write(piece.data(), static_cast<std::streamsize>(piece.size()));
  }
  if (!out) throw InputError("tokenizer " + path + ": write failed");
}

}  // namespace mics::data
