include(${ROOT}/cmake/CheckSansIo.cmake)
tether_check_sans_io("${ROOT}/src/core" "${ROOT}/include/tether/core")
# And the rule itself must bite: a file that includes Asio is rejected.
set(probe "${CMAKE_CURRENT_BINARY_DIR}/sans_io_probe")
file(MAKE_DIRECTORY "${probe}")
file(WRITE "${probe}/bad.cpp" "#include <boost/asio.hpp>\n")
execute_process(COMMAND ${CMAKE_COMMAND} -DROOT=${ROOT} -DPROBE=${probe}
                        -P ${ROOT}/tests/integration/check_sans_io_probe.cmake
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
file(REMOVE_RECURSE "${probe}")
if(rc EQUAL 0)
  message(FATAL_ERROR "the sans-I/O check accepted a file that includes Asio")
endif()
message(STATUS "src/core is sans-I/O")
