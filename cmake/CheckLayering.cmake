# The layering rule (CONTRIBUTING.md, "What may depend on what"), checked on
# every #include of every component.
#
# Each include is put in a family: the standard library, tether's public core
# headers, tether's public network API, a library (Asio, Beast, OpenSSL,
# SQLite, ...), a system header, or an internal folder ("gateway/...").
# Each component lists the families it may use; anything else is an error
# naming the file, the include and the rule. A bare quoted include
# ("ws_link.hpp") is never allowed: internal headers are included with their
# folder.
#
#   tether_check_layering(<root> [RESULT <var>])
#     Without RESULT: stops the configuration on a violation (FATAL_ERROR).
#     With RESULT:    sets <var> to the list of violations (empty: clean).

# component | files (a directory: recursive; a pattern: one folder) | allowed families
set(TETHER_LAYERS
  "core|src/core|std tether_core boost_json boost_system"
  "core API|include/tether/core|std tether_core boost_system"
  "wire|src/wire|std tether_core openssl boost_url boost_json boost_system wire"
  "store|src/store|std tether_core boost_json boost_system sqlite posix store"
  "redis|src/redis|std tether_core asio boost_json boost_system hiredis posix redis store"
  "sim|src/sim|std tether_core sim store"
  "asio|src/asio|std asio beast openssl asio"
  "client|src/client|std tether_core tether_api asio beast openssl boost_json boost_url boost_system posix client"
  "client API|include/tether/*.hpp|std tether_core tether_api asio"
  "gateway|src/gateway|std tether_core asio beast openssl boost_json boost_url boost_system spdlog posix gateway wire store"
  "proxy|src/proxy|std tether_core asio beast boost_json boost_url boost_system spdlog posix proxy"
  "examples|examples|std tether_core tether_api asio"
)
set(TETHER_INTERNAL_FOLDERS core wire store redis sim asio client gateway proxy tools)

# Sets <out> to the family of one include (`delim` is < or ").
function(_tether_include_family path delim out)
  if(delim STREQUAL "\"")
    if(path MATCHES "^([a-z_]+)/")
      list(FIND TETHER_INTERNAL_FOLDERS "${CMAKE_MATCH_1}" i)
      if(i GREATER -1)
        set(${out} "${CMAKE_MATCH_1}" PARENT_SCOPE)
        return()
      endif()
      set(${out} "unknown" PARENT_SCOPE)
      return()
    endif()
    set(${out} "bare" PARENT_SCOPE)
    return()
  endif()
  set(f "posix")
  if(path MATCHES "^tether/core/" OR path STREQUAL "tether/version.hpp")
    set(f tether_core)
  elseif(path MATCHES "^tether/")
    set(f tether_api)
  elseif(path MATCHES "^boost/asio")
    set(f asio)
  elseif(path MATCHES "^boost/beast")
    set(f beast)
  elseif(path MATCHES "^boost/json")
    set(f boost_json)
  elseif(path MATCHES "^boost/url")
    set(f boost_url)
  elseif(path MATCHES "^boost/system")
    set(f boost_system)
  elseif(path MATCHES "^boost/")
    set(f boost_other)
  elseif(path MATCHES "^openssl/")
    set(f openssl)
  elseif(path MATCHES "^sqlite3")
    set(f sqlite)
  elseif(path MATCHES "^spdlog/")
    set(f spdlog)
  elseif(path MATCHES "^hiredis/")
    set(f hiredis)
  elseif(path MATCHES "^(CLI|toml\\+\\+|gtest|gmock|benchmark)/")
    set(f tool_library)
  elseif(path MATCHES "^[a-z_0-9]+$")
    set(f std)
  endif()
  set(${out} "${f}" PARENT_SCOPE)
endfunction()

function(tether_check_layering root)
  cmake_parse_arguments(L "" "RESULT" "" ${ARGN})
  set(errors "")
  foreach(rule IN LISTS TETHER_LAYERS)
    string(REPLACE "|" ";" parts "${rule}")
    list(GET parts 0 component)
    list(GET parts 1 where)
    list(GET parts 2 allowed)
    string(REPLACE " " ";" allowed "${allowed}")
    if(where MATCHES "\\*")
      file(GLOB files "${root}/${where}")
    else()
      file(GLOB_RECURSE files "${root}/${where}/*.hpp" "${root}/${where}/*.cpp"
                              "${root}/${where}/*.ipp" "${root}/${where}/*.h")
    endif()
    foreach(file IN LISTS files)
      file(STRINGS "${file}" lines REGEX "^[ \t]*#[ \t]*include")
      file(RELATIVE_PATH rel "${root}" "${file}")
      foreach(line IN LISTS lines)
        if(NOT line MATCHES "#[ \t]*include[ \t]*([<\"])([^>\"]+)[>\"]")
          continue()
        endif()
        set(delim "${CMAKE_MATCH_1}")
        set(path "${CMAKE_MATCH_2}")
        _tether_include_family("${path}" "${delim}" family)
        list(FIND allowed "${family}" ok)
        if(ok EQUAL -1)
          if(family STREQUAL "bare")
            set(why "internal headers are included with their folder, e.g. \"client/${path}\"")
          else()
            list(JOIN allowed ", " allowed_text)
            set(why "${family} is not allowed in ${component} (allowed: ${allowed_text})")
          endif()
          if(delim STREQUAL "<")
            set(written "<${path}>")
          else()
            set(written "\"${path}\"")
          endif()
          list(APPEND errors "${rel}: #include ${written}: ${why}")
        endif()
      endforeach()
    endforeach()
  endforeach()
  if(L_RESULT)
    set(${L_RESULT} "${errors}" PARENT_SCOPE)
  elseif(errors)
    string(REPLACE ";" "\n  " text "${errors}")
    message(FATAL_ERROR "layering rule broken (CONTRIBUTING.md):\n  ${text}")
  endif()
endfunction()
