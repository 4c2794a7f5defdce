# The `layering_check` test: the tree obeys the layering rule, and the rule
# bites -- each forbidden include planted in a scratch tree is reported.
include(${ROOT}/cmake/CheckLayering.cmake)
tether_check_layering("${ROOT}" RESULT errors)
if(errors)
  string(REPLACE ";" "\n  " text "${errors}")
  message(FATAL_ERROR "layering rule broken:\n  ${text}")
endif()

set(probe "${WORK_DIR}/layering_probe")
file(REMOVE_RECURSE "${probe}")
# component folder | file | forbidden include
set(cases
  "src/core|bad_asio.cpp|#include <boost/asio.hpp>"
  "src/core|bad_sqlite.cpp|#include <sqlite3.h>"
  "include/tether/core|bad_json.hpp|#include <boost/json.hpp>"
  "src/wire|bad_beast.cpp|#include <boost/beast/core.hpp>"
  "src/gateway|bad_client.cpp|#include \"client/driver.hpp\""
  "src/client|bad_gateway.cpp|#include \"gateway/gateway.hpp\""
  "src/client|bad_bare.cpp|#include \"ws_link.hpp\""
  "src/sim|bad_openssl.cpp|#include <openssl/rand.h>"
  "examples|bad_internal.cpp|#include \"client/ws_link.hpp\"")
foreach(c IN LISTS cases)
  string(REPLACE "|" ";" parts "${c}")
  list(GET parts 0 dir)
  list(GET parts 1 name)
  list(GET parts 2 line)
  file(WRITE "${probe}/${dir}/${name}" "${line}\n")
endforeach()
tether_check_layering("${probe}" RESULT found)
file(REMOVE_RECURSE "${probe}")
foreach(c IN LISTS cases)
  string(REPLACE "|" ";" parts "${c}")
  list(GET parts 0 dir)
  list(GET parts 1 name)
  set(hit FALSE)
  foreach(e IN LISTS found)
    if(e MATCHES "^${dir}/${name}: ")
      set(hit TRUE)
    endif()
  endforeach()
  if(NOT hit)
    message(FATAL_ERROR "the layering check accepted ${dir}/${name}")
  endif()
endforeach()
list(LENGTH cases n)
message(STATUS "layering rule holds; ${n} planted violations were all caught")
