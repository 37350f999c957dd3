// Test tool: damages a checkpoint's state file the ways the fault tests need, with the HDF5 C API and
// without updating any checksum (as a stray write or a hand edit would):
//   h5_edit FILE set-int ATTRIBUTE VALUE   overwrite an int64 root attribute
//   h5_edit FILE reshape DATASET           the same values under swapped dims ([a, b] -> [b, a]; [n] -> [1, n])
//   h5_edit FILE delete DATASET            unlink a dataset
//   h5_edit FILE copy DATASET NEW_PATH     a second copy of a dataset under another name (an extra dataset)
//   h5_edit FILE delete-attr ATTRIBUTE     remove a root attribute
//   h5_edit FILE list GROUP                print the names in a group, one per line
#include <hdf5.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "h5_edit: %s\n", what.c_str());
  std::exit(1);
}

hid_t valid(hid_t id, const std::string& what) {
  if (id < 0) fail(what);
  return id;
}

void succeeded(herr_t status, const char* what) {
  if (status < 0) fail(what);
}

// The values and dims of a float dataset.
std::vector<float> read_all(hid_t file, const std::string& path, std::vector<hsize_t>& dims) {
  const hid_t dataset = valid(H5Dopen2(file, path.c_str(), H5P_DEFAULT), "cannot open " + path);
  const hid_t space = valid(H5Dget_space(dataset), "H5Dget_space");
  dims.assign(static_cast<std::size_t>(H5Sget_simple_extent_ndims(space)), 0);
  H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  std::size_t count = 1;
  for (hsize_t d : dims) count *= d;
  std::vector<float> values(count);
  succeeded(H5Dread(dataset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), "H5Dread");
  H5Sclose(space);
  H5Dclose(dataset);
  return values;
}

void write_new(hid_t file, const std::string& path, const std::vector<hsize_t>& dims, const std::vector<float>& values) {
  const hid_t space = valid(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), "H5Screate_simple");
  const hid_t dataset = valid(H5Dcreate2(file, path.c_str(), H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT,
                                        H5P_DEFAULT), "cannot create " + path);
  succeeded(H5Dwrite(dataset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), "H5Dwrite");
  H5Dclose(dataset);
  H5Sclose(space);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) fail("usage: h5_edit FILE set-int ATTRIBUTE VALUE | reshape DATASET | delete DATASET | copy DATASET NEW");
  const std::string action = argv[2], target = argv[3];
  const hid_t file = valid(H5Fopen(argv[1], H5F_ACC_RDWR, H5P_DEFAULT), std::string("cannot open ") + argv[1]);
  if (action == "set-int" && argc == 5) {
    const long long value = std::strtoll(argv[4], nullptr, 10);
    const hid_t attribute = valid(H5Aopen(file, target.c_str(), H5P_DEFAULT), "no attribute " + target);
    succeeded(H5Awrite(attribute, H5T_NATIVE_LLONG, &value), "H5Awrite");
    H5Aclose(attribute);
  } else if (action == "reshape") {
    std::vector<hsize_t> dims;
    const std::vector<float> values = read_all(file, target, dims);
    succeeded(H5Ldelete(file, target.c_str(), H5P_DEFAULT), "H5Ldelete");
    const std::vector<hsize_t> swapped = dims.size() == 2 ? std::vector<hsize_t>{dims[1], dims[0]}
                                                          : std::vector<hsize_t>{1, dims[0]};
    write_new(file, target, swapped, values);
  } else if (action == "list") {
    const hid_t group = valid(H5Gopen2(file, target.c_str(), H5P_DEFAULT), "no group " + target);
    H5G_info_t info{};
    succeeded(H5Gget_info(group, &info), "H5Gget_info");
    for (hsize_t i = 0; i < info.nlinks; ++i) {
      char name[512] = {};
      H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof(name), H5P_DEFAULT);
      std::printf("%s\n", name);
    }
    H5Gclose(group);
  } else if (action == "delete-attr") {
    succeeded(H5Adelete(file, target.c_str()), "H5Adelete");
  } else if (action == "delete") {
    succeeded(H5Ldelete(file, target.c_str(), H5P_DEFAULT), "H5Ldelete");
  } else if (action == "copy" && argc == 5) {
    std::vector<hsize_t> dims;
    const std::vector<float> values = read_all(file, target, dims);
    write_new(file, argv[4], dims, values);
  } else {
    fail("unknown action " + action);
  }
  succeeded(H5Fclose(file), "H5Fclose");
  return 0;
}
