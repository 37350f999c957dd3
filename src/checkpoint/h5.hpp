// Private helpers of the checkpoint area: RAII owners for HDF5 handles, attribute access, and the
// selection of a flat element range of a 1-D or 2-D dataset. Every failure throws mics::Error naming
// the file and the object.
#pragma once
#include <hdf5.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <utility>
#include <vector>

namespace mics::checkpoint::h5 {

// Owns one HDF5 identifier; closes it with the matching H5?close on scope exit. A handle destroyed by
// an exception that began after it was made is abandoned instead: closing a file or dataset opened
// with MPI-IO is collective, and the peers of a rank that failed part-way are not in that call (the
// caller stops the job or never commits the file, so nothing relies on the close).
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer), exceptions_at_birth_(std::uncaught_exceptions()) {}
  Handle(Handle&& other) noexcept
      : id_(std::exchange(other.id_, H5I_INVALID_HID)),
        closer_(other.closer_),
        exceptions_at_birth_(other.exceptions_at_birth_) {}
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = std::exchange(other.id_, H5I_INVALID_HID);
      closer_ = other.closer_;
      exceptions_at_birth_ = other.exceptions_at_birth_;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() {
    if (std::uncaught_exceptions() > exceptions_at_birth_) return;  // unwinding: abandon (see above)
    reset();
  }

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes now and reports failure (a file's close is where buffered data reaches the disk).
  bool close() {
    if (id_ < 0) return true;
    const herr_t status = closer_(id_);
    id_ = H5I_INVALID_HID;
    return status >= 0;
  }

 private:
  void reset() {
    if (id_ >= 0) closer_(id_);
    id_ = H5I_INVALID_HID;
  }
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
  int exceptions_at_birth_ = 0;
};

// Turns HDF5's own error-stack printing off while alive: mics reports errors with its own messages.
class QuietErrors {
 public:
  QuietErrors();
  ~QuietErrors();
  QuietErrors(const QuietErrors&) = delete;
  QuietErrors& operator=(const QuietErrors&) = delete;

 private:
  H5E_auto2_t previous_function_ = nullptr;
  void* previous_data_ = nullptr;
};

// `what` names the failed operation and object in the thrown message.
Handle checked(hid_t id, Handle::Closer closer, const std::string& what);
void check(herr_t status, const std::string& what);

// Checkpoint files need no HDF5 file locks (written once into a .partial directory, then renamed), and
// locking fails on some parallel file systems (Lustre/FSx): it is turned off.
void disable_file_locking(hid_t file_access);
Handle open_file_read(const std::string& path);  // serial (sec2) driver, read-only, no file locking
Handle open_group(hid_t parent, const std::string& name, const std::string& file);
Handle open_dataset(hid_t group, const std::string& name, const std::string& where);

void write_attribute(hid_t object, const std::string& name, std::int64_t value);
void write_attribute(hid_t object, const std::string& name, double value);
void write_attribute(hid_t object, const std::string& name, const std::string& value);
std::int64_t read_int_attribute(hid_t object, const std::string& name, const std::string& where);
double read_double_attribute(hid_t object, const std::string& name, const std::string& where);
std::string read_string_attribute(hid_t object, const std::string& name, const std::string& where);

// Dimensions of a dataset (1-D or 2-D in a checkpoint).
std::vector<hsize_t> dataset_dims(hid_t dataset, const std::string& where);
// "[768, 3072]"
std::string dims_text(const std::vector<hsize_t>& dims);

// Selects elements [begin, end) of a row-major dataset of `dims` as a union of hyperslabs (partial
// first row, full rows, partial last row). An empty range selects nothing.
void select_flat_range(hid_t file_space, const std::vector<hsize_t>& dims, std::size_t begin, std::size_t end);

// A 1-D memory space of `count` elements, all selected (none selected when count is 0).
Handle memory_space(std::size_t count);

// Names of the links in a group, in name order.
std::vector<std::string> link_names(hid_t group, const std::string& where);
// Names of the attributes of an object, in name order.
std::vector<std::string> attribute_names(hid_t object, const std::string& where);
// Whether a dataset's stored type is a 4-byte IEEE float (what every checkpoint tensor is).
bool is_float32(hid_t dataset, const std::string& where);

}  // namespace mics::checkpoint::h5

namespace mics::model {
struct TensorInfo;
}  // namespace mics::model

namespace mics::checkpoint {
struct Metadata;
// The state file's metadata attributes (metadata.cpp): written with their checksum; read from a file
// already open, the checksum verified (format 2 on), every model dimension range-checked.
void write_metadata(hid_t file, const Metadata& metadata);
Metadata read_metadata_from(hid_t file, const std::string& where);
// The root attributes a file of this format version has, sorted by name.
std::vector<std::string> metadata_attribute_names(std::int64_t format_version);
// The dims of a tensor's dataset, after checking that they are the tensor's shape in the layout the
// metadata describes and that it stores 4-byte floats (state_file.cpp): a reshaped or retyped dataset is
// refused by name, by resume, verify, inspect and export alike.
std::vector<hsize_t> tensor_dims(hid_t dataset, const model::TensorInfo& tensor, const std::string& where);
}  // namespace mics::checkpoint
