#include "h5.hpp"

#include <algorithm>

#include "mics/util/error.hpp"

namespace mics::checkpoint::h5 {

QuietErrors::QuietErrors() {
  H5Eget_auto2(H5E_DEFAULT, &previous_function_, &previous_data_);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

QuietErrors::~QuietErrors() { H5Eset_auto2(H5E_DEFAULT, previous_function_, previous_data_); }

Handle checked(hid_t id, Handle::Closer closer, const std::string& what) {
  if (id < 0) throw InputError(what + " failed");
  return Handle(id, closer);
}

void check(herr_t status, const std::string& what) {
  if (status < 0) throw InputError(what + " failed");
}

void disable_file_locking(hid_t file_access) {
  check(H5Pset_file_locking(file_access, false, true), "H5Pset_file_locking");
}

Handle open_file_read(const std::string& path) {
  Handle access = checked(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "H5Pcreate(file access)");
  disable_file_locking(access.get());
  const hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, access.get());
  if (id < 0) throw InputError(path + ": not a readable HDF5 file (missing, truncated or damaged)");
  return Handle(id, H5Fclose);
}

Handle open_group(hid_t parent, const std::string& name, const std::string& file) {
  const hid_t id = H5Gopen2(parent, name.c_str(), H5P_DEFAULT);
  if (id < 0) throw InputError(file + ": group " + name + " is missing");
  return Handle(id, H5Gclose);
}

Handle open_dataset(hid_t group, const std::string& name, const std::string& where) {
  const hid_t id = H5Dopen2(group, name.c_str(), H5P_DEFAULT);
  if (id < 0) throw InputError(where + ": dataset " + name + " is missing");
  return Handle(id, H5Dclose);
}

namespace {
void write_scalar(hid_t object, const std::string& name, hid_t type, const void* value) {
  Handle space = checked(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate for attribute " + name);
  Handle attribute = checked(H5Acreate2(object, name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                             "creating attribute " + name);
  check(H5Awrite(attribute.get(), type, value), "writing attribute " + name);
}

Handle open_attribute(hid_t object, const std::string& name, const std::string& where) {
  const hid_t id = H5Aopen(object, name.c_str(), H5P_DEFAULT);
  if (id < 0) throw InputError(where + ": attribute " + name + " is missing");
  return Handle(id, H5Aclose);
}
}  // namespace

void write_attribute(hid_t object, const std::string& name, std::int64_t value) {
  write_scalar(object, name, H5T_NATIVE_INT64, &value);
}

void write_attribute(hid_t object, const std::string& name, double value) {
  write_scalar(object, name, H5T_NATIVE_DOUBLE, &value);
}

void write_attribute(hid_t object, const std::string& name, const std::string& value) {
  // Fixed-length, null-terminated: h5dump and h5py show it as plain text.
  Handle type = checked(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy");
  check(H5Tset_size(type.get(), value.size() + 1), "H5Tset_size");
  check(H5Tset_strpad(type.get(), H5T_STR_NULLTERM), "H5Tset_strpad");
  write_scalar(object, name, type.get(), value.c_str());
}

std::int64_t read_int_attribute(hid_t object, const std::string& name, const std::string& where) {
  Handle attribute = open_attribute(object, name, where);
  std::int64_t value = 0;
  check(H5Aread(attribute.get(), H5T_NATIVE_INT64, &value), where + ": reading attribute " + name);
  return value;
}

double read_double_attribute(hid_t object, const std::string& name, const std::string& where) {
  Handle attribute = open_attribute(object, name, where);
  double value = 0;
  check(H5Aread(attribute.get(), H5T_NATIVE_DOUBLE, &value), where + ": reading attribute " + name);
  return value;
}

std::string read_string_attribute(hid_t object, const std::string& name, const std::string& where) {
  Handle attribute = open_attribute(object, name, where);
  Handle type = checked(H5Aget_type(attribute.get()), H5Tclose, where + ": type of attribute " + name);
  if (H5Tget_class(type.get()) != H5T_STRING || H5Tis_variable_str(type.get()) > 0)
    throw InputError(where + ": attribute " + name + " is not a fixed-length string");
  const std::size_t size = H5Tget_size(type.get());
  std::string value(size, '\0');
  check(H5Aread(attribute.get(), type.get(), value.data()), where + ": reading attribute " + name);
  value.resize(std::min(value.find('\0'), value.size()));
  return value;
}

std::vector<hsize_t> dataset_dims(hid_t dataset, const std::string& where) {
  Handle space = checked(H5Dget_space(dataset), H5Sclose, where + ": H5Dget_space");
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 1 || rank > 2) throw InputError(where + ": expected a 1-D or 2-D dataset, found rank " + std::to_string(rank));
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return dims;
}

std::string dims_text(const std::vector<hsize_t>& dims) {
  std::string text = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) text += (i ? ", " : "") + std::to_string(dims[i]);
  return text + "]";
}

void select_flat_range(hid_t file_space, const std::vector<hsize_t>& dims, std::size_t begin, std::size_t end) {
  check(H5Sselect_none(file_space), "H5Sselect_none");
  if (begin >= end) return;
  if (dims.size() == 1) {
    const hsize_t start = begin, count = end - begin;
    check(H5Sselect_hyperslab(file_space, H5S_SELECT_SET, &start, nullptr, &count, nullptr), "H5Sselect_hyperslab");
    return;
  }
  const std::size_t columns = dims[1];
  std::size_t row = begin / columns;
  std::size_t column = begin % columns;
  const std::size_t last_row = (end - 1) / columns;  // row of the last element
  // The rows [row, last_row] in up to three pieces; OR keeps them one selection in row-major order.
  auto add = [&](std::size_t first_row, std::size_t rows, std::size_t first_column, std::size_t columns_in_piece) {
    const hsize_t start[2] = {first_row, first_column};
    const hsize_t count[2] = {rows, columns_in_piece};
    check(H5Sselect_hyperslab(file_space, H5S_SELECT_OR, start, nullptr, count, nullptr), "H5Sselect_hyperslab");
  };
  if (row == last_row) {
    add(row, 1, column, end - begin);
    return;
  }
  if (column != 0) {  // partial first row
    add(row, 1, column, columns - column);
    ++row;
  }
  const std::size_t end_column = end - last_row * columns;  // elements of the last row in the range
  const std::size_t full_end = end_column == columns ? last_row + 1 : last_row;
  if (full_end > row) add(row, full_end - row, 0, columns);
  if (end_column != columns) add(last_row, 1, 0, end_column);  // partial last row
}

Handle memory_space(std::size_t count) {
  const hsize_t dims = std::max<std::size_t>(count, 1);
  Handle space = checked(H5Screate_simple(1, &dims, nullptr), H5Sclose, "H5Screate_simple");
  if (count == 0) check(H5Sselect_none(space.get()), "H5Sselect_none");
  return space;
}

std::vector<std::string> link_names(hid_t group, const std::string& where) {
  H5G_info_t info{};
  check(H5Gget_info(group, &info), where + ": H5Gget_info");
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t length = H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (length < 0) throw InputError(where + ": cannot read link " + std::to_string(i));
    std::string name(static_cast<std::size_t>(length) + 1, '\0');
    H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(), H5P_DEFAULT);
    name.resize(static_cast<std::size_t>(length));
    names.push_back(std::move(name));
  }
  return names;
}

std::vector<std::string> attribute_names(hid_t object, const std::string& where) {
  // H5Aiterate2 (rather than H5Oget_info3): the same call in HDF5 1.10 and later.
  std::vector<std::string> names;
  hsize_t index = 0;
  const auto collect = [](hid_t, const char* name, const H5A_info_t*, void* out) -> herr_t {
    static_cast<std::vector<std::string>*>(out)->emplace_back(name);
    return 0;
  };
  check(H5Aiterate2(object, H5_INDEX_NAME, H5_ITER_INC, &index, collect, &names), where + ": listing attributes");
  return names;
}

bool is_float32(hid_t dataset, const std::string& where) {
  Handle type = checked(H5Dget_type(dataset), H5Tclose, where + ": H5Dget_type");
  return H5Tget_class(type.get()) == H5T_FLOAT && H5Tget_size(type.get()) == 4;
}

}  // namespace mics::checkpoint::h5
