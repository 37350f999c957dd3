#include "pieces.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "mics/checkpoint/checkpoint.hpp"
#include "mics/engine/sharding.hpp"

namespace mics::checkpoint {

ShardSlice replica_slice(std::size_t shard_numel, int replica, int replicas) {
  const std::size_t first = shard_numel * static_cast<std::size_t>(replica) / static_cast<std::size_t>(replicas);
  const std::size_t last = shard_numel * static_cast<std::size_t>(replica + 1) / static_cast<std::size_t>(replicas);
  return {first, last - first};
}

std::vector<Piece> piece_plan(const model::ParamLayout& layout, int partition_size, int replicas) {
  std::vector<Piece> plan;
  for (int q = 0; q < partition_size; ++q) {
    const std::vector<engine::UnitSharding> sharding = engine::shard_units(layout, partition_size, q);
    for (int g = 0; g < replicas; ++g) {
      const int writer = g * partition_size + q;
      std::size_t staged = 0;  // this writer's staging buffer: its pieces in order, each page-aligned
      for (std::size_t u = 0; u < sharding.size(); ++u) {
        const engine::UnitSharding& s = sharding[u];
        const ShardSlice slice = replica_slice(s.shard_numel, g, replicas);
        const std::size_t lo = s.shard_begin + slice.first, hi = lo + slice.count;  // unit elements
        for (int kind = 0; kind < 3; ++kind) {
          for (int t : layout.units()[u].tensors) {
            const model::TensorInfo& tensor = layout.tensors()[static_cast<std::size_t>(t)];
            const std::size_t begin = std::max(lo, tensor.offset), end = std::min(hi, tensor.offset + tensor.numel);
            if (begin >= end) continue;
            // Rectangles of [begin, end) in tensor coordinates: partial first row, whole rows, partial last row.
            const std::size_t columns = tensor.shape.size() == 2 ? static_cast<std::size_t>(tensor.shape[1]) : tensor.numel;
            std::size_t at = begin - tensor.offset;
            const std::size_t stop = end - tensor.offset;
            while (at < stop) {
              const std::size_t row = at / columns, column = at % columns;
              std::size_t rows = 1, width = std::min(columns - column, stop - at);
              if (column == 0 && stop - at >= columns) {
                rows = (stop - at) / columns;
                width = columns;
              }
              Piece piece;
              piece.kind = kind;
              piece.tensor = t;
              piece.unit = static_cast<int>(u);
              piece.writer = writer;
              piece.begin = at;
              piece.end = at + rows * width;
              piece.row = row;
              piece.rows = rows;
              piece.column = column;
              piece.columns = width;
              piece.shard_offset = tensor.offset + at - s.shard_begin;
              piece.staging_offset = (staged + kStagingAlignment - 1) / kStagingAlignment * kStagingAlignment;
              staged = piece.staging_offset + piece.numel();
              plan.push_back(piece);
              at = piece.end;
            }
          }
        }
      }
    }
  }
  std::stable_sort(plan.begin(), plan.end(), [](const Piece& a, const Piece& b) { return a.writer < b.writer; });
  return plan;
}

std::size_t staging_elements(const std::vector<Piece>& writer_pieces) {
  std::size_t end = 0;
  for (const Piece& piece : writer_pieces) end = std::max(end, piece.staging_offset + piece.numel());
  return end;
}

std::string rank_file_name(int world_rank) {
  char name[32];
  std::snprintf(name, sizeof(name), "shard_%05d.h5", world_rank);
  return name;
}

std::string piece_dataset_name(const Piece& piece, const model::ParamLayout& layout) {
  return std::string("/") + kTensorGroups[piece.kind] + "/" +
         layout.tensors()[static_cast<std::size_t>(piece.tensor)].name + "@" + std::to_string(piece.begin);
}

namespace {

constexpr std::uint64_t kPrime1 = 0x9E3779B185EBCA87ull;
constexpr std::uint64_t kPrime2 = 0xC2B2AE3D27D4EB4Full;
constexpr std::uint64_t kPrime3 = 0x165667B19E3779F9ull;
constexpr std::uint64_t kPrime4 = 0x85EBCA77C2B2AE63ull;
constexpr std::uint64_t kPrime5 = 0x27D4EB2F165667C5ull;

inline std::uint64_t rotl(std::uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline std::uint64_t round64(std::uint64_t acc, std::uint64_t input) {
  return rotl(acc + input * kPrime2, 31) * kPrime1;
}
inline std::uint64_t merge(std::uint64_t acc, std::uint64_t value) {
  return (acc ^ round64(0, value)) * kPrime1 + kPrime4;
}
inline std::uint64_t load64(const unsigned char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline std::uint32_t load32(const unsigned char* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace

std::uint64_t xxh64(const void* data, std::size_t bytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  const unsigned char* const end = p + bytes;
  std::uint64_t h;
  if (bytes >= 32) {
    // Four independent lanes: the loop runs at memory speed.
    std::uint64_t v1 = kPrime1 + kPrime2, v2 = kPrime2, v3 = 0, v4 = 0 - kPrime1;
    const unsigned char* const limit = end - 32;
    do {
      v1 = round64(v1, load64(p));
      v2 = round64(v2, load64(p + 8));
      v3 = round64(v3, load64(p + 16));
      v4 = round64(v4, load64(p + 24));
      p += 32;
    } while (p <= limit);
    h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18);
    h = merge(h, v1);
    h = merge(h, v2);
    h = merge(h, v3);
    h = merge(h, v4);
  } else {
    h = kPrime5;
  }
  h += bytes;
  for (; p + 8 <= end; p += 8) h = rotl(h ^ round64(0, load64(p)), 27) * kPrime1 + kPrime4;
  if (p + 4 <= end) {
    h = rotl(h ^ (static_cast<std::uint64_t>(load32(p)) * kPrime1), 23) * kPrime2 + kPrime3;
    p += 4;
  }
  for (; p < end; ++p) h = rotl(h ^ (*p * kPrime5), 11) * kPrime1;
  h ^= h >> 33;
  h *= kPrime2;
  h ^= h >> 29;
  h *= kPrime3;
  h ^= h >> 32;
  return h;
}

}  // namespace mics::checkpoint
