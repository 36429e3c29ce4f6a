# Run the tally program on a sample file and compare its output.
# Invoked by ctest as: cmake -DTALLY=... -DINPUT=... -P cli.cmake
execute_process(
  COMMAND "${TALLY}" "${INPUT}"
  OUTPUT_VARIABLE output
  RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "tally exited with ${status}")
endif()
set(expected "lines=3 words=9 bytes=45 longest=19 ${INPUT}\n")
if(NOT output STREQUAL expected)
  message(FATAL_ERROR "unexpected output:\n${output}expected:\n${expected}")
endif()
