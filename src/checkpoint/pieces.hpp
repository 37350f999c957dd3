// Private: how a format-3 checkpoint divides the model state among the ranks that write it.
//
// Rank (g, q) (partition group g of r, index q of p; world rank g*p + q) holds shard q of every unit, as
// do the other r - 1 replicas. Each replica writes a distinct 1/r of it: replica g writes elements
// [S*g/r, S*(g+1)/r) of each unit's shard (S its size), for params, adam_m and adam_v. So all n ranks
// write, nothing is written twice, and every rank writes about state/n.
//
// The part of one tensor that one rank writes is a flat element range; stored as up to three rectangles
// (a partial first row, whole rows, a partial last row), each a contiguous dataset of its own shape in
// the rank's file, so that a virtual dataset in the index file can map it onto the global tensor with one
// regular hyperslab. The plan is a pure function of the layout and (p, r): a reader of any layout computes
// it again from the checkpoint's metadata.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mics/model/gpt.hpp"

namespace mics::checkpoint {

struct Piece {
  int kind = 0;    // index into kTensorGroups: params, adam_m, adam_v
  int tensor = 0;  // index into layout.tensors()
  int unit = 0;
  int writer = 0;  // world rank whose file holds it
  std::size_t begin = 0, end = 0;         // flat elements of the tensor
  std::size_t row = 0, rows = 1;          // the rectangle: rows [row, row + rows) ...
  std::size_t column = 0, columns = 0;    // ... columns [column, column + columns)
  std::size_t shard_offset = 0;           // where `begin` lies in the writer's unit shard
  std::size_t staging_offset = 0;         // where it lies in the writer's staging buffer (elements): a
                                          // multiple of kStagingAlignment, so it can be written with O_DIRECT
  std::size_t numel() const { return end - begin; }
};

// Elements: each piece starts a page (4 KiB) into its writer's staging buffer.
inline constexpr std::size_t kStagingAlignment = 1024;

// Every piece of the state for a partition size p and r replicas, ordered by writer, then unit, kind,
// tensor and offset (the order a writer stages and writes them).
// The staging buffer a writer needs: the end of its last piece (elements).
std::vector<Piece> piece_plan(const model::ParamLayout& layout, int partition_size, int replicas);
std::size_t staging_elements(const std::vector<Piece>& writer_pieces);

// The slice of its unit shard that replica g of r writes: [first, first + count).
struct ShardSlice {
  std::size_t first = 0, count = 0;
};
ShardSlice replica_slice(std::size_t shard_numel, int replica, int replicas);

// "shard_00012.h5": the file world rank 12 writes.
std::string rank_file_name(int world_rank);
// "/params/h.3.mlp.c_fc.weight@1536": the dataset of a piece in its writer's file (by its flat offset).
std::string piece_dataset_name(const Piece& piece, const model::ParamLayout& layout);

// XXH64 (seed 0) of `bytes`: the per-piece checksum of format 3, stored as the piece's `xxh64` attribute.
std::uint64_t xxh64(const void* data, std::size_t bytes);

}  // namespace mics::checkpoint
