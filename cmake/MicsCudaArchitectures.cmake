# mics_default_cuda_architectures(NVCC OUT_VAR): the default CMAKE_CUDA_ARCHITECTURES, before
# enable_language(CUDA) (which needs it): the GPU instance families of AWS ParallelCluster that this nvcc
# can build for.
#   p3/p3dn   V100       70   only with CUDA 12 or older: nvcc 13 builds sm_75 and up
#   p4d/p4de  A100       80
#   g5        A10G       86   (its sm_86 code also runs on the L4/L40S of g6/g6e, sm_89)
#   p5/p5en   H100/H200  90   with PTX too, which newer GPUs (sm_100 and up) compile when loading
# "-real" is machine code only; the last entry also carries PTX.
function(mics_default_cuda_architectures nvcc out_var)
  set(archs 80-real 86-real 90)
  set(major "")
  if(nvcc)
    execute_process(COMMAND "${nvcc}" --version OUTPUT_VARIABLE version_text ERROR_QUIET RESULT_VARIABLE rc)
    if(rc EQUAL 0 AND version_text MATCHES "release ([0-9]+)\\.([0-9]+)")
      set(major ${CMAKE_MATCH_1})
    endif()
  endif()
  if(major AND major LESS 13)
    list(PREPEND archs 70-real)
  endif()
  set(${out_var} "${archs}" PARENT_SCOPE)
endfunction()
