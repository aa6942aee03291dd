# MPI for `grok train`, `grok plan` and tensor-parallel inference (src/dist): built only when CMake
# finds an MPI implementation (Debian: libopenmpi-dev). Without it the library
# is single-process and everything else works the same.
find_package(MPI COMPONENTS C QUIET)
if(MPI_C_FOUND)
  target_link_libraries(grokcore PUBLIC MPI::MPI_C)
  target_compile_definitions(grokcore PRIVATE GK_HAVE_MPI=1)
  message(STATUS "grok: MPI found (${MPI_C_LIB_NAMES}): multi-process training enabled")
else()
  message(STATUS "grok: MPI not found: single-process training only")
endif()
