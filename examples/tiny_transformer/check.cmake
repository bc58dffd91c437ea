# Runs srp-tiny-transformer as a user would, and checks what it promises:
#  - a run through reaches its goal: >= 99% test accuracy, for the live
#    model and for the weight average;
#  - a run stopped halfway and resumed from its checkpoint prints the same
#    lines and saves the same checkpoint, byte for byte, as the run through
#    (every weight, u, v, sigma, the optimizer, the average, the watch and
#    the data draws are in it);
#  - a bad flag, a missing or a corrupt checkpoint: a message and a non-zero
#    exit, no crash.
# tests/CMakeLists.txt runs it on the build tree's program, and
# tests/consumer/check.sh on one built against an installed library:
#   cmake -DEXE=<srp-tiny-transformer> -DWORK=<scratch folder> -P check.cmake
cmake_minimum_required(VERSION 3.20)
if(NOT EXE OR NOT WORK)
  message(FATAL_ERROR "usage: cmake -DEXE=<srp-tiny-transformer> -DWORK=<folder> -P check.cmake")
endif()
set(steps 500)
math(EXPR half "${steps} / 2")
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

# run(<name> <expected exit code> args...): output in <name>_out, <name>_err.
function(run name expect)
  execute_process(COMMAND "${EXE}" ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out
    ERROR_VARIABLE err)
  message(STATUS "srp-tiny-transformer ${ARGN}: exit ${rc}\n${out}${err}")
  if(NOT rc STREQUAL expect)
    message(FATAL_ERROR "srp-tiny-transformer ${ARGN}: exit ${rc}, expected ${expect}")
  endif()
  set(${name}_out "${out}" PARENT_SCOPE)
  set(${name}_err "${err}" PARENT_SCOPE)
endfunction()

run(through 0 --steps ${steps} --checkpoint "${WORK}/through.srp")
string(REGEX MATCH "test accuracy ([0-9.]+)%, weight average ([0-9.]+)%" line "${through_out}")
if(NOT line OR CMAKE_MATCH_1 LESS 99 OR CMAKE_MATCH_2 LESS 99)
  message(FATAL_ERROR "below the goal of 99% test accuracy: '${line}'")
endif()

run(first 0 --steps ${half} --checkpoint "${WORK}/half.srp")
run(second 0 --steps ${steps} --resume "${WORK}/half.srp" --checkpoint "${WORK}/resumed.srp")
file(SHA256 "${WORK}/through.srp" through_sha)
file(SHA256 "${WORK}/resumed.srp" resumed_sha)
if(NOT through_sha STREQUAL resumed_sha)
  message(FATAL_ERROR "resumed at step ${half}, the run saved another checkpoint "
    "(${resumed_sha}) than the run through (${through_sha})")
endif()
# the first half's lines but its evaluation, then the second half's
string(REGEX REPLACE "test accuracy[^\n]*\n" "" first_steps "${first_out}")
if(NOT "${first_steps}${second_out}" STREQUAL through_out)
  message(FATAL_ERROR "stopped and resumed, the run printed other lines than the run through")
endif()

run(usage 2 --steps)
run(unknown 2 --epochs 3)
run(missing 1 --steps 1 --resume "${WORK}/missing.srp")
file(WRITE "${WORK}/corrupt.srp" "not a checkpoint")
run(corrupt 1 --steps 1 --resume "${WORK}/corrupt.srp")
foreach(name missing corrupt)
  if(NOT ${name}_err MATCHES "^error: ")
    message(FATAL_ERROR "a ${name} checkpoint: no error message, but '${${name}_err}'")
  endif()
endforeach()
message(STATUS "srp-tiny-transformer: ${line}; resumed at step ${half}, the same checkpoint "
  "(sha256 ${through_sha})")
