# Finds what libsigmareparam links against and wraps it in imported targets.
# Used by the build and, installed next to sigmareparamConfig.cmake, by
# find_package(sigmareparam), so a consumer of the static library gets the
# same BLAS the library was built with.
#
#   sigmareparam::openblas  OpenBLAS: cblas + LAPACK (Debian: libopenblas-dev)
#   ZLIB::ZLIB              zlib: CRC32 for checkpoints (Debian: zlib1g-dev)
#   sigmareparam::libm      the C math library
include_guard(GLOBAL)

if(NOT TARGET sigmareparam::openblas)
  # OpenBLAS ships OpenBLASConfig.cmake (Debian installs it under
  # <libdir>/cmake/openblas, following the active alternative). Point
  # OpenBLAS_DIR elsewhere to pick another build.
  find_package(OpenBLAS CONFIG QUIET)
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
    message(FATAL_ERROR
      "libsigmareparam needs OpenBLAS (cblas and LAPACK), and it was not found.\n"
      "On Debian or Ubuntu: sudo apt-get install libopenblas-dev\n"
      "Elsewhere, set OpenBLAS_DIR to the folder holding OpenBLASConfig.cmake.")
  endif()
  add_library(sigmareparam::openblas INTERFACE IMPORTED)
  set_target_properties(sigmareparam::openblas PROPERTIES
    INTERFACE_LINK_LIBRARIES "${_srp_blas_libs}"
    INTERFACE_INCLUDE_DIRECTORIES "${_srp_blas_incs}")
  unset(_srp_blas_libs)
  unset(_srp_blas_incs)
endif()

if(NOT TARGET ZLIB::ZLIB)
  find_package(ZLIB QUIET)
  if(NOT ZLIB_FOUND)
    message(FATAL_ERROR
      "libsigmareparam needs zlib, and it was not found.\n"
      "On Debian or Ubuntu: sudo apt-get install zlib1g-dev")
  endif()
endif()

if(NOT TARGET sigmareparam::libm)
  add_library(sigmareparam::libm INTERFACE IMPORTED)
  if(UNIX)
    set_target_properties(sigmareparam::libm PROPERTIES INTERFACE_LINK_LIBRARIES m)
  endif()
endif()
