# Finds what libsigmareparam links against and wraps it in imported targets.
# Used by the build and, installed next to sigmareparamConfig.cmake, by
# find_package(sigmareparam), so a consumer of the static library gets the
# same BLAS the library was built with.
#
#   sigmareparam::openblas  OpenBLAS: cblas + LAPACK (Debian: libopenblas-openmp-dev)
#   sigmareparam::onednn    oneDNN's GEMMs, with SRP_WITH_ONEDNN (Debian: libdnnl-dev)
#   OpenMP::OpenMP_C        the library's own parallel loops (libgomp, with gcc)
#   ZLIB::ZLIB              zlib: CRC32 for checkpoints (Debian: zlib1g-dev)
#   cjson                   cJSON: safetensors headers, the examples' metrics (Debian: libcjson-dev)
#   sigmareparam::libm      the C math library
#   MPI::MPI_C              with SRP_WITH_MPI: Open MPI or any MPI (Debian: libopenmpi-dev)
#
# Why the OpenMP build of OpenBLAS: the library runs its own loops (softmax,
# entropy, norms, per-head attention) with OpenMP between GEMMs. With the
# pthreads OpenBLAS the two thread pools spin against each other on every
# switch (measured on 2 cores: a 6400x384x128 sgemm went from 3.5 to 6.4 ms
# when alternated with an OpenMP loop); with the OpenMP build they share one
# pool, and a GEMM called inside our parallel region runs on its thread.
# Any OpenBLAS works; the library checks at run time which one it got.
#
# From the installed package config (SRP_DEPENDENCY_CONTEXT = package, only
# for the static library: a shared one carries its own links) a missing
# dependency makes find_package(sigmareparam) report "not found" with the
# reason, instead of stopping the consumer's configure.
include_guard(GLOBAL)

macro(srp_dependency_missing message_text)
  if(SRP_DEPENDENCY_CONTEXT STREQUAL "package")
    set(sigmareparam_FOUND FALSE)
    set(sigmareparam_NOT_FOUND_MESSAGE "${message_text}")
    return()
  endif()
  message(FATAL_ERROR "${message_text}")
endmacro()

if(NOT TARGET sigmareparam::openblas)
  # OpenBLAS ships OpenBLASConfig.cmake. Debian keeps one per variant and
  # points <libdir>/cmake/openblas at the active alternative; look at the
  # OpenMP variant first. Set OpenBLAS_DIR to choose another build.
  set(_srp_blas_hints)
  if(CMAKE_LIBRARY_ARCHITECTURE)
    list(APPEND _srp_blas_hints /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp/cmake/openblas)
  endif()
  find_package(OpenBLAS CONFIG QUIET HINTS ${_srp_blas_hints})
  unset(_srp_blas_hints)
  if(OpenBLAS_FOUND AND OpenBLAS_LIBRARIES)
    set(_srp_blas_libs ${OpenBLAS_LIBRARIES})
    set(_srp_blas_incs ${OpenBLAS_INCLUDE_DIRS})
  else()
    # No config file (other distributions, hand builds): look for the pieces.
    find_library(SRP_OPENBLAS_LIBRARY NAMES openblas openblasp openblaso)
    find_path(SRP_OPENBLAS_INCLUDE_DIR NAMES cblas.h PATH_SUFFIXES openblas)
    if(SRP_OPENBLAS_LIBRARY AND SRP_OPENBLAS_INCLUDE_DIR)
      set(_srp_blas_libs ${SRP_OPENBLAS_LIBRARY})
      set(_srp_blas_incs ${SRP_OPENBLAS_INCLUDE_DIR})
    endif()
  endif()
  if(NOT _srp_blas_libs)
    srp_dependency_missing(
      "libsigmareparam needs OpenBLAS (cblas and LAPACK), and it was not found.\n"
      "On Debian or Ubuntu: sudo apt-get install libopenblas-openmp-dev (or libopenblas-dev)\n"
      "Elsewhere, set OpenBLAS_DIR to the folder holding OpenBLASConfig.cmake.")
  endif()
  add_library(sigmareparam::openblas INTERFACE IMPORTED)
  set_target_properties(sigmareparam::openblas PROPERTIES
    INTERFACE_LINK_LIBRARIES "${_srp_blas_libs}"
    INTERFACE_INCLUDE_DIRECTORIES "${_srp_blas_incs}")
  unset(_srp_blas_libs)
  unset(_srp_blas_incs)
endif()

# oneDNN (Debian: libdnnl-dev), the faster GEMM backend: found by its header
# and library, not its dnnl-config.cmake, which requires OpenCL development
# files (Debian's is built with the OpenCL GPU runtime) that the CPU path
# never uses. SRP_WITH_ONEDNN says whether to look for it; the package config
# sets it from the installed build.
if(SRP_WITH_ONEDNN AND NOT TARGET sigmareparam::onednn)
  find_path(SRP_ONEDNN_INCLUDE_DIR NAMES oneapi/dnnl/dnnl.h)
  find_library(SRP_ONEDNN_LIBRARY NAMES dnnl)
  if(NOT SRP_ONEDNN_INCLUDE_DIR OR NOT SRP_ONEDNN_LIBRARY)
    srp_dependency_missing(
      "libsigmareparam was configured with the oneDNN GEMM backend, and oneDNN was not found.\n"
      "On Debian or Ubuntu: sudo apt-get install libdnnl-dev (or configure with -DSRP_GEMM=openblas)")
  endif()
  add_library(sigmareparam::onednn INTERFACE IMPORTED)
  set_target_properties(sigmareparam::onednn PROPERTIES
    INTERFACE_LINK_LIBRARIES "${SRP_ONEDNN_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${SRP_ONEDNN_INCLUDE_DIR}")
endif()

if(NOT TARGET OpenMP::OpenMP_C)
  # A C++-only consumer has no C compiler enabled: take OpenMP's runtime
  # through its C++ compiler (the same libgomp with gcc).
  get_property(_srp_languages GLOBAL PROPERTY ENABLED_LANGUAGES)
  if("C" IN_LIST _srp_languages)
    find_package(OpenMP COMPONENTS C QUIET)
  elseif("CXX" IN_LIST _srp_languages)
    find_package(OpenMP COMPONENTS CXX QUIET)
    if(OpenMP_CXX_FOUND)
      add_library(OpenMP::OpenMP_C INTERFACE IMPORTED)
      set_target_properties(OpenMP::OpenMP_C PROPERTIES INTERFACE_LINK_LIBRARIES OpenMP::OpenMP_CXX)
    endif()
  endif()
  unset(_srp_languages)
  if(NOT TARGET OpenMP::OpenMP_C)
    srp_dependency_missing("libsigmareparam needs OpenMP (gcc has it: libgomp).")
  endif()
endif()

if(NOT TARGET ZLIB::ZLIB)
  find_package(ZLIB QUIET)
  if(NOT ZLIB_FOUND)
    srp_dependency_missing(
      "libsigmareparam needs zlib, and it was not found.\n"
      "On Debian or Ubuntu: sudo apt-get install zlib1g-dev")
  endif()
endif()

if(NOT TARGET cjson)
  find_package(cJSON CONFIG QUIET)
  if(NOT TARGET cjson)
    srp_dependency_missing(
      "libsigmareparam needs cJSON, and it was not found.\n"
      "On Debian or Ubuntu: sudo apt-get install libcjson-dev")
  endif()
endif()

if(NOT TARGET sigmareparam::libm)
  add_library(sigmareparam::libm INTERFACE IMPORTED)
  if(UNIX)
    set_target_properties(sigmareparam::libm PROPERTIES INTERFACE_LINK_LIBRARIES m)
  endif()
endif()

# MPI, for dist_mpi.h (SRP_WITH_MPI): public, since that header includes <mpi.h>.
if(SRP_WITH_MPI AND NOT TARGET MPI::MPI_C)
  find_package(MPI COMPONENTS C QUIET)
  if(NOT MPI_C_FOUND)
    srp_dependency_missing(
      "libsigmareparam was configured with SRP_WITH_MPI, and no MPI was found.\n"
      "On Debian or Ubuntu: sudo apt-get install libopenmpi-dev openmpi-bin")
  endif()
endif()
