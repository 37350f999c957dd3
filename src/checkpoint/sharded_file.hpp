// Private: the files of a format-3 checkpoint (docs/checkpoint-format.md): one file per rank with the
// pieces it writes (pieces.hpp), and the index file state.h5 with the metadata and, for every tensor, a
// virtual dataset of its global shape over the pieces, so h5py or h5dump open one file and see every
// named tensor. mics itself reads the pieces directly, verifying each one's checksum (a virtual dataset
// would read a missing file as zeros).
#pragma once
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "h5.hpp"
#include "mics/checkpoint/checkpoint.hpp"
#include "pieces.hpp"

namespace mics::checkpoint {

// Writes `pieces` (this rank's, from the plan) out of `staging` into `path` with the serial driver, one
// contiguous dataset each with its xxh64 attribute, then closes and fsyncs the file. Refuses (throws) a
// piece holding a value that is not finite. Uses HDF5 only from the calling thread.
void write_rank_file(const std::filesystem::path& path, const float* staging, const std::vector<Piece>& pieces,
                     const model::ParamLayout& layout);

// The index file: metadata attributes and one virtual dataset per tensor and kind over `plan`.
void write_index_file(const std::filesystem::path& path, const Metadata& metadata, const std::vector<Piece>& plan,
                      const model::ParamLayout& layout);

// Reads ranges of tensors of a format-3 checkpoint from its pieces, each piece verified against its xxh64.
class PieceReader {
 public:
  PieceReader(const std::filesystem::path& directory, const Metadata& metadata);
  const model::ParamLayout& layout() const { return layout_; }
  const std::vector<Piece>& plan() const { return plan_; }
  // The index of the checkpoint model's tensor of that name; throws InputError naming `where` when none.
  int tensor_index(const std::string& name, const std::string& where) const;
  // Elements [begin, end) of tensor `tensor` of kind `kind` into out. Throws InputError naming the file
  // and piece that is missing, of the wrong shape, or fails its checksum.
  void read(int kind, int tensor, std::size_t begin, std::size_t end, float* out);
  // Reads and checks one piece whole (verify).
  void check(const Piece& piece);

 private:
  std::vector<float> read_piece(const Piece& piece);
  hid_t file(int writer);

  std::filesystem::path directory_;
  model::ParamLayout layout_;
  std::vector<Piece> plan_;
  std::map<int, h5::Handle> files_;
};

}  // namespace mics::checkpoint
