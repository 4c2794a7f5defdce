# Compiler settings shared by every tether target.
add_library(tether_warnings INTERFACE)
add_library(tether::warnings ALIAS tether_warnings)
target_compile_options(tether_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast
  -Wcast-align -Wunused -Woverloaded-virtual -Wconversion -Wsign-conversion
  -Wdouble-promotion -Wimplicit-fallthrough)
if(TETHER_WARNINGS_AS_ERRORS)
  target_compile_options(tether_warnings INTERFACE -Werror)
endif()

find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
endif()
