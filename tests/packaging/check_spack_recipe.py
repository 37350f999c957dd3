"""The Spack recipe (packaging/spack) without Spack: the repository's layout, and the recipe parsed with
`ast` (never imported: it imports Spack) checked for its class, base classes, versions, variants,
dependencies and CMake options against what mics's CMakeLists.txt reads.

The dependency names are those of Spack's builtin packages (virtuals: mpi, c, cxx); the variant names
after them (hdf5+mpi, boost+log, ...) are variants of those packages."""
import argparse
import ast
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import mics_test  # noqa: E402

# Spack builtin packages (and virtuals) the recipe may depend on, with the variants it may ask of them.
KNOWN_PACKAGES = {
    "c": set(), "cxx": set(), "cmake": set(), "mpi": set(), "openmpi": set(),
    "hdf5": {"mpi", "hl", "cxx", "shared"},
    "boost": {"program_options", "log", "thread", "filesystem", "date_time", "regex", "atomic", "chrono",
              "system", "shared", "multithreaded"},
    "openblas": {"shared"}, "nlohmann-json": set(), "nccl": set(), "catch2": set(), "python": set(), "cuda": set(),
}
# What a site needs: an MPI, parallel HDF5, Boost with program_options and log, nlohmann-json, OpenBLAS; NCCL with
# CUDA; Catch2 and Python with the tests.
REQUIRED = [
    ("mpi", set(), None),
    ("hdf5", {"mpi"}, None),
    ("boost", {"program_options", "log"}, None),
    ("nlohmann-json", set(), None),
    ("openblas", set(), None),
    ("cmake", set(), None),
    ("nccl", set(), "+cuda"),
    ("catch2", set(), "+tests"),
    ("python", set(), "+tests"),
]
SPEC = re.compile(r"^(?P<name>[a-z0-9-]+)(?P<rest>.*)$")


def const_str(node):
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def call_name(node):
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id
    return None


def kwarg(call, name):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def parse_spec(text):
    """'hdf5@1.10:+mpi' -> ('hdf5', {'mpi'}); f-strings are given as their constant parts."""
    m = SPEC.match(text.strip())
    if not m:
        return None, set()
    variants = set(re.findall(r"\+([a-z0-9_]+)", m.group("rest")))
    return m.group("name"), variants


def cmake_options(source_dir):
    """Every option and cache variable that mics's CMakeLists.txt files read."""
    names = set()
    for root, _, files in os.walk(source_dir):
        if any(part.startswith(("build", ".")) for part in os.path.relpath(root, source_dir).split(os.sep)
               if part != "."):
            continue
        for f in files:
            if f == "CMakeLists.txt" or f.endswith(".cmake"):
                text = open(os.path.join(root, f)).read()
                names.update(re.findall(r"\b(?:option|set)\((\w+)", text))
    # standard CMake variables and find-module hints the recipe may set
    names.update({"CMAKE_CUDA_ARCHITECTURES", "CMAKE_CUDA_COMPILER", "CUDAToolkit_ROOT", "HDF5_ROOT"})
    return names


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--source-dir", required=True)
    args = parser.parse_args()
    checks = mics_test.Checks()
    repo = os.path.join(args.source_dir, "packaging", "spack")
    recipe = os.path.join(repo, "packages", "mics", "package.py")

    repo_yaml = open(os.path.join(repo, "repo.yaml")).read()
    checks.check(re.search(r"^repo:\s*$", repo_yaml, re.M) is not None, "repo.yaml has no 'repo:' mapping")
    checks.check(re.search(r"^\s+namespace:\s*['\"]?mics['\"]?\s*$", repo_yaml, re.M) is not None,
                 "repo.yaml's namespace is not 'mics'")

    source = open(recipe).read()
    tree = ast.parse(source, recipe)
    compile(tree, recipe, "exec")  # what Python would reject beyond the grammar
    imports = {(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               for alias in node.names}
    checks.check(("spack.package", "*") in imports, "the recipe does not import spack.package")
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    checks.check([c.name for c in classes] == ["Mics"], "classes: %s, want Mics" % [c.name for c in classes])
    if not classes:
        checks.finish()
    cls = classes[0]
    bases = [b.id for b in cls.bases if isinstance(b, ast.Name)]
    checks.check(bases == ["CMakePackage", "CudaPackage"], "base classes %s" % bases)
    checks.check(ast.get_docstring(cls) is not None, "the class has no docstring (spack info shows it)")
    attrs = {t.id for node in cls.body if isinstance(node, ast.Assign) for t in node.targets
             if isinstance(t, ast.Name)}
    checks.check({"homepage", "git"} <= attrs, "homepage/git missing: %s" % sorted(attrs))

    directives = {}
    for node in ast.walk(cls):
        name = call_name(node)
        if name in ("version", "variant", "depends_on", "conflicts"):
            directives.setdefault(name, []).append(node)

    versions = [const_str(c.args[0]) for c in directives.get("version", [])]
    checks.check("main" in versions, "versions %s: no 'main'" % versions)
    variants = {const_str(c.args[0]): c for c in directives.get("variant", [])}
    checks.check("tests" in variants, "variants %s: no 'tests'" % sorted(variants))
    for name, call in variants.items():
        checks.check(kwarg(call, "default") is not None and kwarg(call, "description") is not None,
                     "variant %s needs default= and description=" % name)

    deps = []  # (name, variants, when)
    for call in directives.get("depends_on", []):
        arg = call.args[0]
        if isinstance(arg, ast.JoinedStr):  # f"nccl cuda_arch={_arch}"
            text = "".join(v.value for v in arg.values if isinstance(v, ast.Constant))
        else:
            text = const_str(arg)
        checks.check(text is not None, "depends_on(%s): not a string" % ast.dump(arg))
        when = kwarg(call, "when")
        when_text = None
        if when is not None:
            when_text = const_str(when) or "".join(v.value for v in getattr(when, "values", [])
                                                   if isinstance(v, ast.Constant))
        name, wanted = parse_spec(text or "")
        deps.append((name, wanted, when_text))
        known = KNOWN_PACKAGES.get(name)
        checks.check(known is not None, "depends_on(%r): not a known Spack package" % text)
        if known is not None:
            checks.check(wanted <= known, "depends_on(%r): variants %s not known for %s" %
                         (text, sorted(wanted - known), name))
        dtype = kwarg(call, "type")
        if dtype is not None:
            types = [const_str(e) for e in getattr(dtype, "elts", [dtype])]
            checks.check(set(types) <= {"build", "link", "run", "test"}, "depends_on(%r): type %s" %
                         (text, types))
        if when_text:
            for v in re.findall(r"\+([a-z_]+)", when_text):
                checks.check(v in variants or v == "cuda", "depends_on(%r) when=%r: no variant %s" %
                             (text, when_text, v))
    for name, wanted, when in REQUIRED:
        found = [d for d in deps if d[0] == name and wanted <= d[1] and (when is None or (d[2] or "") == when)
                 and (when is not None or d[2] is None)]
        checks.check(bool(found), "no depends_on(%s%s%s)" % (name, "".join("+" + v for v in sorted(wanted)),
                                                            ", when=%r" % when if when else ""))
    cmake_min = [d for d in deps if d[0] == "cmake"]
    text = source[source.find('depends_on("cmake'):][:40]
    checks.check(bool(cmake_min) and "cmake@3.22:" in text, "cmake dependency should be cmake@3.22: (%r)" % text)

    # cmake_args: the names it defines must be options mics's CMake reads
    options = cmake_options(args.source_dir)
    methods = {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}
    checks.check("cmake_args" in methods, "no cmake_args()")
    defined = set()
    for node in ast.walk(methods.get("cmake_args", cls)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("define", "define_from_variant") and node.args:
            defined.add(const_str(node.args[0]))
    for name in sorted(n for n in defined if n):
        checks.check(name in options, "cmake_args defines %s, which the CMake files never read" % name)
    for name in ("MICS_CUDA", "MICS_BUILD_TESTS", "MICS_NATIVE", "CMAKE_CUDA_ARCHITECTURES"):
        checks.check(name in defined, "cmake_args does not set %s" % name)

    # Run the recipe against a stand-in of Spack's package API: the class body's directives and
    # cmake_args() for ~cuda, +cuda with and without cuda_arch, the Spack 0.23 and 1.x import paths.
    for layout in ("spack-0.23", "spack-1.x"):
        for variant_set, archs in (({"tests"}, ["none"]), ({"cuda"}, ["none"]), ({"cuda", "tests"}, ["80", "90"])):
            try:
                cmake = run_recipe(recipe, layout, variant_set, archs)
            except Exception as e:  # noqa: BLE001 - any failure of the recipe is the finding
                checks.check(False, "%s %s: the recipe failed: %r" % (layout, sorted(variant_set), e))
                continue
            label = "%s +%s cuda_arch=%s" % (layout, "+".join(sorted(variant_set)), ",".join(archs))
            cuda = "cuda" in variant_set
            checks.check(("-DMICS_CUDA:STRING=%s" % ("ON" if cuda else "OFF")) in cmake, label + ": " + str(cmake))
            tests = "-DMICS_BUILD_TESTS:BOOL=%s" % ("ON" if "tests" in variant_set else "OFF")
            checks.check(tests in cmake, label + ": want %s: %s" % (tests, cmake))
            checks.check("-DMICS_NATIVE:BOOL=OFF" in cmake, label + ": -march=native not off")
            arch_args = [a for a in cmake if a.startswith("-DCMAKE_CUDA_ARCHITECTURES")]
            want = ["-DCMAKE_CUDA_ARCHITECTURES:STRING=80;90"] if archs != ["none"] and cuda else []
            checks.check(arch_args == want, label + ": CUDA architectures %s, want %s" % (arch_args, want))
    checks.finish()


class _Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, kind):
        def directive(*args, **kwargs):
            self.calls.append((kind, args, kwargs))
        return directive


def _fake_spack(layout):
    """sys.modules entries for a minimal spack.package (and spack_repo for Spack 1.x)."""
    import types
    recorder = _Recorder()

    class CMakePackage:
        def define(self, name, value):
            if isinstance(value, bool):
                return "-D%s:BOOL=%s" % (name, "ON" if value else "OFF")
            if isinstance(value, (list, tuple)):
                value = ";".join(str(v) for v in value)
            return "-D%s:STRING=%s" % (name, value)

        def define_from_variant(self, name, variant):
            return self.define(name, self.spec.satisfies("+" + variant))

    class CudaPackage:
        cuda_arch_values = ("70", "75", "80", "86", "89", "90", "100")

    package = types.ModuleType("spack.package")
    for kind in ("version", "variant", "depends_on", "conflicts", "maintainers", "license"):
        setattr(package, kind, recorder(kind))
    package.__all__ = [n for n in vars(package) if not n.startswith("_")]
    modules = {"spack": types.ModuleType("spack"), "spack.package": package}
    if layout == "spack-0.23":
        package.CMakePackage, package.CudaPackage = CMakePackage, CudaPackage
        package.__all__ += ["CMakePackage", "CudaPackage"]
    else:
        for name in ("spack_repo", "spack_repo.builtin", "spack_repo.builtin.build_systems"):
            modules[name] = types.ModuleType(name)
        cmake = types.ModuleType("spack_repo.builtin.build_systems.cmake")
        cmake.CMakePackage = CMakePackage
        cuda = types.ModuleType("spack_repo.builtin.build_systems.cuda")
        cuda.CudaPackage = CudaPackage
        modules[cmake.__name__], modules[cuda.__name__] = cmake, cuda
    return modules, recorder


class _Prefix(str):
    def __getattr__(self, name):
        return _Prefix(os.path.join(self, name))


class _Spec:
    def __init__(self, variant_set, archs):
        self._variants = variant_set
        self.variants = {"cuda_arch": type("V", (), {"value": tuple(archs)})()}

    def satisfies(self, text):
        return all(v in self._variants for v in re.findall(r"\+([a-z_]+)", text))

    def __getitem__(self, name):
        return type("Dep", (), {"prefix": _Prefix("/spack/opt/" + name)})()


def run_recipe(recipe, layout, variant_set, archs):
    import importlib.util
    saved = {k: v for k, v in sys.modules.items() if k == "spack" or k.startswith(("spack.", "spack_repo"))}
    for k in saved:
        del sys.modules[k]
    modules, recorder = _fake_spack(layout)
    sys.modules.update(modules)
    try:
        spec = importlib.util.spec_from_file_location("mics_recipe_under_test", recipe)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        pkg = module.Mics.__new__(module.Mics)
        pkg.spec = _Spec(variant_set, archs)
        kinds = {k for k, _, _ in recorder.calls}
        if not {"version", "variant", "depends_on"} <= kinds:
            raise RuntimeError("directives run: %s" % sorted(kinds))
        if not module.Mics.git:
            raise RuntimeError("no git URL")
        args = pkg.cmake_args()
        env = type("Env", (), {"set": lambda self, k, v: None})()
        pkg.setup_build_environment(env)
        return args
    finally:
        for k in list(sys.modules):
            if k == "spack" or k.startswith(("spack.", "spack_repo")):
                del sys.modules[k]
        sys.modules.update(saved)


if __name__ == "__main__":
    main()
