// The state file's root attributes: written with a checksum over all of them, read back and verified.
#include <hdf5.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "h5.hpp"
#include "mics/checkpoint/checkpoint.hpp"
#include "mics/util/error.hpp"

namespace mics::checkpoint {

namespace {

// CRC-64/XZ (ECMA-182 polynomial, reflected): catches every error burst up to 64 bits, so any one flipped
// bit or byte in the metadata. Bitwise: the metadata is a few kilobytes, read once.
std::uint64_t crc64(const std::string& bytes) {
  constexpr std::uint64_t kPolynomial = 0xC96C5795D7870F42ull;
  std::uint64_t crc = ~std::uint64_t{0};
  for (const unsigned char byte : bytes) {
    crc ^= byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (kPolynomial & (0 - (crc & 1)));
  }
  return ~crc;
}

// Every attribute's name and value in one canonical text: integers in decimal, reals as hexadecimal
// floats (exact), strings with their length first (so no value can imitate a field boundary).
std::string canonical_text(const Metadata& m) {
  std::string text;
  const auto integer = [&](const char* name, std::int64_t value) {
    text += name;
    text += '=' + std::to_string(value) + '\n';
  };
  const auto real = [&](const char* name, double value) {
    char hex[64];
    std::snprintf(hex, sizeof(hex), "%a", value);
    text += name;
    text += '=';
    text += hex;
    text += '\n';
  };
  const auto string = [&](const char* name, const std::string& value) {
    text += name;
    text += '[' + std::to_string(value.size()) + "]=" + value + '\n';
  };
  integer("format_version", m.format_version);
  integer("step", m.step);
  integer("tokens_seen", m.tokens_seen);
  integer("sampler_position", m.sampler_position);
  integer("seed", m.seed);
  string("deck", m.deck);
  real("schedule_lr", m.schedule_lr);
  integer("schedule_warmup_steps", m.schedule_warmup_steps);
  integer("schedule_total_steps", m.schedule_total_steps);
  real("schedule_min_lr_ratio", m.schedule_min_lr_ratio);
  integer("model_layers", m.model.layers);
  integer("model_heads", m.model.heads);
  integer("model_channels", m.model.channels);
  integer("model_vocab", m.model.vocab);
  integer("model_padded_vocab", m.model.padded_vocab);
  integer("model_max_seq_len", m.model.max_seq_len);
  integer("topology_world", m.world);
  integer("topology_partition_size", m.partition_size);
  integer("topology_replicas", m.replicas);
  integer("topology_ranks_per_node", m.ranks_per_node);
  string("topology_strategy", m.strategy);
  return text;
}

// A model dimension read from an int64 attribute: it must fit the int the model uses.
int model_dimension(std::int64_t value, const char* name, const std::string& where) {
  if (value < 1 || value > 0x7fffffff)
    throw InputError(where + ": attribute " + name + " = " + std::to_string(value) + " is not a model dimension");
  return static_cast<int>(value);
}

}  // namespace

std::uint64_t metadata_checksum(const Metadata& metadata) { return crc64(canonical_text(metadata)); }

std::vector<std::string> metadata_attribute_names(std::int64_t format_version) {
  std::vector<std::string> names = {
      "deck",           "format_version",      "model_channels",       "model_heads",
      "model_layers",   "model_max_seq_len",   "model_padded_vocab",   "model_vocab",
      "sampler_position", "schedule_lr",       "schedule_min_lr_ratio", "schedule_total_steps",
      "schedule_warmup_steps", "seed",         "step",                 "tokens_seen",
      "topology_partition_size", "topology_ranks_per_node", "topology_replicas", "topology_strategy",
      "topology_world"};
  if (format_version >= 2) names.push_back(kMetadataChecksumAttribute);
  std::sort(names.begin(), names.end());
  return names;
}

void write_metadata(hid_t file, const Metadata& m) {
  h5::write_attribute(file, "format_version", m.format_version);
  h5::write_attribute(file, "step", m.step);
  h5::write_attribute(file, "tokens_seen", m.tokens_seen);
  h5::write_attribute(file, "sampler_position", m.sampler_position);
  h5::write_attribute(file, "seed", m.seed);
  h5::write_attribute(file, "deck", m.deck);
  h5::write_attribute(file, "schedule_lr", m.schedule_lr);
  h5::write_attribute(file, "schedule_warmup_steps", m.schedule_warmup_steps);
  h5::write_attribute(file, "schedule_total_steps", m.schedule_total_steps);
  h5::write_attribute(file, "schedule_min_lr_ratio", m.schedule_min_lr_ratio);
  h5::write_attribute(file, "model_layers", std::int64_t{m.model.layers});
  h5::write_attribute(file, "model_heads", std::int64_t{m.model.heads});
  h5::write_attribute(file, "model_channels", std::int64_t{m.model.channels});
  h5::write_attribute(file, "model_vocab", std::int64_t{m.model.vocab});
  h5::write_attribute(file, "model_padded_vocab", std::int64_t{m.model.padded_vocab});
  h5::write_attribute(file, "model_max_seq_len", std::int64_t{m.model.max_seq_len});
  h5::write_attribute(file, "topology_world", m.world);
  h5::write_attribute(file, "topology_partition_size", m.partition_size);
  h5::write_attribute(file, "topology_replicas", m.replicas);
  h5::write_attribute(file, "topology_ranks_per_node", m.ranks_per_node);
  h5::write_attribute(file, "topology_strategy", m.strategy);
  // Stored as the int64 with the same bits: HDF5 attributes of mics are int64, double or string.
  h5::write_attribute(file, kMetadataChecksumAttribute, static_cast<std::int64_t>(metadata_checksum(m)));
}

Metadata read_metadata_from(hid_t file, const std::string& where) {
  Metadata m;
  m.format_version = h5::read_int_attribute(file, "format_version", where);
  if (m.format_version < kOldestFormatVersion || m.format_version > kFormatVersion)
    throw InputError(where + ": format_version " + std::to_string(m.format_version) +
                     " is not supported (this mics reads " + std::to_string(kOldestFormatVersion) + " to " +
                     std::to_string(kFormatVersion) + ")");
  const auto get_int = [&](const char* name) { return h5::read_int_attribute(file, name, where); };
  m.step = get_int("step");
  m.tokens_seen = get_int("tokens_seen");
  m.sampler_position = get_int("sampler_position");
  m.seed = get_int("seed");
  m.deck = h5::read_string_attribute(file, "deck", where);
  m.schedule_lr = h5::read_double_attribute(file, "schedule_lr", where);
  m.schedule_warmup_steps = get_int("schedule_warmup_steps");
  m.schedule_total_steps = get_int("schedule_total_steps");
  m.schedule_min_lr_ratio = h5::read_double_attribute(file, "schedule_min_lr_ratio", where);
  m.model.layers = model_dimension(get_int("model_layers"), "model_layers", where);
  m.model.heads = model_dimension(get_int("model_heads"), "model_heads", where);
  m.model.channels = model_dimension(get_int("model_channels"), "model_channels", where);
  m.model.vocab = model_dimension(get_int("model_vocab"), "model_vocab", where);
  m.model.padded_vocab = model_dimension(get_int("model_padded_vocab"), "model_padded_vocab", where);
  m.model.max_seq_len = model_dimension(get_int("model_max_seq_len"), "model_max_seq_len", where);
  m.world = get_int("topology_world");
  m.partition_size = get_int("topology_partition_size");
  m.replicas = get_int("topology_replicas");
  m.ranks_per_node = get_int("topology_ranks_per_node");
  m.strategy = h5::read_string_attribute(file, "topology_strategy", where);

  // Format 1 had no checksum; from 2 on it is required, so a flipped format_version cannot skip it.
  const bool has_checksum = H5Aexists(file, kMetadataChecksumAttribute) > 0;
  if (m.format_version == 1) {
    if (has_checksum)
      throw InputError(where + ": format_version 1 with a " + kMetadataChecksumAttribute +
                       " attribute: the metadata was changed after it was written");
    return m;
  }
  const auto stored = static_cast<std::uint64_t>(get_int(kMetadataChecksumAttribute));
  const std::uint64_t computed = metadata_checksum(m);
  if (stored != computed) {
    char text[96];
    std::snprintf(text, sizeof(text), " (stored %016llx, computed %016llx)", static_cast<unsigned long long>(stored),
                  static_cast<unsigned long long>(computed));
    throw InputError(where + ": the metadata checksum does not match" + text +
                     ": an attribute (step, tokens, schedule, model, topology or deck) was changed after writing");
  }
  return m;
}

Metadata read_metadata(const std::filesystem::path& file) {
  h5::QuietErrors quiet;
  h5::Handle handle = h5::open_file_read(file.string());
  return read_metadata_from(handle.get(), file.string());
}

}  // namespace mics::checkpoint
