# Compiler settings shared by every tether target.
add_library(tether_warnings INTERFACE)
add_library(tether::warnings ALIAS tether_warnings)
target_compile_options(tether_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast
  -Wcast-align -Wunused -Woverloaded-virtual -Wconversion -Wsign-conversion
  -Wdouble-promotion -Wimplicit-fallthrough)
if(TETHER_WARNINGS_AS_ERRORS)
  target_compile_options(tether_warnings INTERFACE -Werror)
  # GCC 12 at -O3 reports impossible sizes inside libstdc++'s string copies
  # (-Wrestrict, -Wstringop-overflow; GCC bugs 105329 and 105651): kept as
  # warnings, not errors, in optimised GCC builds.
  target_compile_options(tether_warnings INTERFACE
    $<$<AND:$<CXX_COMPILER_ID:GNU>,$<CONFIG:Release>>:-Wno-error=restrict;-Wno-error=stringop-overflow>)
endif()

find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
endif()

# Extra compile options for the Asio/Beast-heavy components (the client
# library, the gateway, the proxy, the Asio/Beast compilation unit and the
# tools). The sanitizer presets set -O0 here: Beast's WebSocket and TLS
# operations take about 1.7x as long to compile under the sanitizers at -O1,
# while the sans-I/O cores, the store and the simulator, where the tests spend
# their CPU, keep the preset's -O1.
set(TETHER_IO_CXX_FLAGS "" CACHE STRING "Extra compile options for the Asio/Beast-heavy targets")
function(tether_io_flags target)
  if(TETHER_IO_CXX_FLAGS)
    separate_arguments(flags UNIX_COMMAND "${TETHER_IO_CXX_FLAGS}")
    target_compile_options(${target} PRIVATE ${flags})
  endif()
endfunction()
