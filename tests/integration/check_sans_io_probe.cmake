include(${ROOT}/cmake/CheckSansIo.cmake)
tether_check_sans_io("${PROBE}")
