# The `api_docs` test: the API reference of include/tether/ builds with no
# warning, and the rule bites -- a public header with an undocumented member,
# run through the same Doxyfile, fails.
#   -DDOXYGEN=<doxygen> -DDOXYFILE=<build>/Doxyfile -DWORK_DIR=<scratch>
file(READ "${DOXYFILE}" config)

function(run_doxygen cfg out_rc out_log)
  file(WRITE "${WORK_DIR}/Doxyfile.run" "${cfg}")
  execute_process(COMMAND "${DOXYGEN}" "${WORK_DIR}/Doxyfile.run"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(${out_rc} "${rc}" PARENT_SCOPE)
  set(${out_log} "${out}${err}" PARENT_SCOPE)
endfunction()

# 1. The real reference: clean.
file(REMOVE_RECURSE "${WORK_DIR}/real")
file(MAKE_DIRECTORY "${WORK_DIR}/real")
run_doxygen("${config}\nOUTPUT_DIRECTORY = ${WORK_DIR}/real\nWARN_LOGFILE =\n" rc log)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "api_docs: doxygen failed on include/tether/ (rc ${rc}):\n${log}")
endif()
if(NOT EXISTS "${WORK_DIR}/real/html/index.html")
  message(FATAL_ERROR "api_docs: no html/index.html was written")
endif()

# 2. A planted header with an undocumented public function must fail.
set(probe "${WORK_DIR}/probe")
file(REMOVE_RECURSE "${probe}")
file(WRITE "${probe}/include/tether/probe.hpp"
  "#pragma once\n/// @file\n/// A documented file.\nnamespace tether {\n"
  "/// A documented struct.\nstruct Probe {\n    int undocumented_member(int x);\n};\n}\n")
run_doxygen("${config}\nINPUT = ${probe}/include/tether\nOUTPUT_DIRECTORY = ${probe}/out\nWARN_LOGFILE =\n"
            rc log)
if(rc EQUAL 0)
  message(FATAL_ERROR "api_docs: an undocumented public member did not fail the build")
endif()
if(NOT log MATCHES "undocumented_member")
  message(FATAL_ERROR "api_docs: the failure does not name the undocumented member:\n${log}")
endif()
message(STATUS "api_docs: include/tether/ documented; an undocumented member fails")
