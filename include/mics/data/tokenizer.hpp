// Decoding token ids to text: byte-level models (vocab <= 256, as `mics data prepare` writes them) map
// each token to its byte; GPT-2 vocabularies need llm.c's tokenizer file (gpt2_tokenizer.bin):
//   header 256 x uint32: [0] magic 20240328, [1] version 1 or 2, [2] vocab size, [3] EOT token (v2);
//   then for each token a uint8 length and that many bytes.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mics::data {

inline constexpr std::uint32_t kTokenizerMagic = 20240328;

class Tokenizer {
 public:
  // Byte-level: token t is byte t (vocab <= 256).
  static Tokenizer bytes(int vocab);
  // llm.c's tokenizer file; InputError naming the file for a bad magic, version or truncation.
  static Tokenizer load(const std::string& path);

  int vocab() const { return static_cast<int>(pieces_.size()); }
  std::optional<std::int32_t> end_of_text() const { return eot_; }
  // The bytes of one token (InputError when it is outside the vocabulary).
  const std::string& decode(std::int32_t token) const;
  std::string decode(const std::vector<std::int32_t>& tokens) const;

 private:
  std::vector<std::string> pieces_;
  std::optional<std::int32_t> eot_;
};

// Writes a tokenizer file (version 2) for the given pieces (tests, conversions).
void write_tokenizer(const std::string& path, const std::vector<std::string>& pieces, std::int32_t eot);

}  // namespace mics::data
