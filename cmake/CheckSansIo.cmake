# tether_check_sans_io(dir...): fail configuration when any source or header
# below the given directories includes Asio or Beast. The sans-I/O core takes
# time and bytes as arguments; sockets belong in src/net.
function(tether_check_sans_io)
  foreach(dir IN LISTS ARGN)
    file(GLOB_RECURSE files "${dir}/*.hpp" "${dir}/*.cpp" "${dir}/*.ipp" "${dir}/*.h")
    foreach(f IN LISTS files)
      file(STRINGS "${f}" hits REGEX "#[ \t]*include[ \t]*[<\"](boost/(asio|beast)|asio|beast)[/.>\"]")
      if(hits)
        message(FATAL_ERROR "sans-I/O rule broken: ${f} includes Asio/Beast: ${hits}\n"
                            "src/core and include/tether/core must not do I/O; move it to src/net.")
      endif()
    endforeach()
  endforeach()
endfunction()
