# Spack recipe for mics, for Spack 0.23 (language virtuals c, cxx) and 1.x.
#
#   spack repo add packaging/spack             # this folder, in a clone of mics
#   spack install mics                         # CPU backend (OpenBLAS + OpenMP)
#   spack install mics+cuda cuda_arch=90       # CUDA/NCCL backend for H100/H200 (p5); 80 for A100, 86 for A10G
#   spack install --test=root mics+tests       # and run the test suite (Open MPI's mpirun) after the build
#
# `spack install mics@main` clones the git repository named by MICS_GIT_URL (a URL, or file:///path of a
# clone), by default the clone this recipe sits in. With a checkout of your own, `spack develop
# --path /path/to/mics mics@main` builds it in place.
import os

from spack.package import *

try:  # Spack 1.x: the build systems live in the builtin package repository
    from spack_repo.builtin.build_systems.cmake import CMakePackage
    from spack_repo.builtin.build_systems.cuda import CudaPackage
except ImportError:  # Spack 0.23: spack.package exports them
    pass


def _default_git_url():
    try:
        root = os.path.dirname(os.path.abspath(__file__))
        for _ in range(4):  # packages/mics -> packages -> spack -> packaging -> the clone
            root = os.path.dirname(root)
        return "file://" + root
    except NameError:
        return None


class Mics(CMakePackage, CudaPackage):
    """MiCS (Minimize Communication Scale) data-parallel training of GPT-2-architecture transformers on
    MPI: model states sharded in partition groups and replicated across replication groups, with a CPU
    backend (OpenBLAS, OpenMP), a CUDA/cuBLAS/NCCL backend and parallel-HDF5 checkpoints."""

    homepage = "https://www.vldb.org/pvldb/vol16/p37-zhang.pdf"
    git = os.environ.get("MICS_GIT_URL") or _default_git_url()

    version("main", branch="main")

    variant("tests", default=False, description="Build the test suite (Catch2, under Open MPI's mpirun)")

    depends_on("c", type="build")
    depends_on("cxx", type="build")
    depends_on("cmake@3.22:", type="build")

    depends_on("mpi")
    depends_on("hdf5@1.10:+mpi")
    depends_on("boost@1.74:+program_options+log+thread+filesystem+date_time+regex+atomic+chrono+system+shared")
    # Header-only JSON (metrics, plan, calibration, safetensors); found through its CMake config.
    depends_on("nlohmann-json@3.10:", type=("build", "link"))
    # OpenBLAS by name: CMake looks for it as the BLAS vendor (BLA_VENDOR=OpenBLAS). The kernels run in
    # OpenMP regions, so an OpenMP-threaded OpenBLAS avoids oversubscription.
    depends_on("openblas")

    depends_on("nccl", when="+cuda")
    for _arch in CudaPackage.cuda_arch_values:
        depends_on(f"nccl cuda_arch={_arch}", when=f"+cuda cuda_arch={_arch}")
    # nvcc 13 builds sm_75 and newer only: V100 (p3, sm_70) needs CUDA 12 or older.
    conflicts("^cuda@13:", when="+cuda cuda_arch=70", msg="V100 (cuda_arch=70) needs CUDA 12 or older")

    # The test suite: Catch2 v2 or v3; the MPI tests and the Python drivers start Open MPI's mpirun with
    # Open MPI's options (--oversubscribe, --bind-to none).
    depends_on("catch2@2.13:", type=("build", "link"), when="+tests")
    depends_on("python@3.8:", type=("build", "test"), when="+tests")
    depends_on("openmpi", when="+tests")

    def cmake_args(self):
        spec = self.spec
        args = [
            self.define("MICS_CUDA", "ON" if spec.satisfies("+cuda") else "OFF"),
            self.define_from_variant("MICS_BUILD_TESTS", "tests"),
            # Spack's compiler wrappers add the flags of the spec's target: no -march=native
            self.define("MICS_NATIVE", False),
            self.define("HDF5_ROOT", spec["hdf5"].prefix),
        ]
        if spec.satisfies("+cuda"):
            args.append(self.define("CUDAToolkit_ROOT", spec["cuda"].prefix))
            args.append(self.define("CMAKE_CUDA_COMPILER", spec["cuda"].prefix.bin.nvcc))
            archs = [a for a in spec.variants["cuda_arch"].value if a != "none"]
            if archs:  # else the mics default (cmake/MicsCudaArchitectures.cmake)
                args.append(self.define("CMAKE_CUDA_ARCHITECTURES", archs))
        return args

    def setup_build_environment(self, env):
        if self.spec.satisfies("+cuda"):
            env.set("NCCL_HOME", self.spec["nccl"].prefix)
