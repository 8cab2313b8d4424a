# Unit tests of the plugin SDK (plugin-api/): the C++ wrapper against a fake
# host, and the frozen ABI checked from C11 and C++20. include()d from
# tests/unit/CMakeLists.txt; paths are relative to this file. Needs GTest.
#
#   kagzi_hpp_test   kagzi.hpp: codecs, Json, step trampolines, suspension,
#                    error mapping, registration, against an ABI 1.0 host
#                    table (kagzi_hpp_test.cc)
#   kagzi_hpp_1_1_test  kagzi.hpp's ABI 1.1 calls against a fake 1.1 host:
#                    retry policies, cancellation, events, child workflows,
#                    parallel steps (on real threads), helpers, workflow
#                    timeouts, refusal by a 1.0 host (kagzi_hpp_1_1_test.cc)
#   abi_freeze_test  sizes/offsets/types of every v1.x struct, status values;
#                    plugin.h compiled as C11 and as C++20 with
#                    -Wall -Wextra -pedantic -Werror (abi_freeze_*.c*)
#
# These targets add the SDK include directory themselves, with their own
# strict flags, instead of linking Kagzi::plugin_api.
include(GoogleTest)
if(NOT TARGET GTest::gtest_main)
  find_package(GTest REQUIRED)
endif()
if(NOT TARGET Threads::Threads)
  find_package(Threads REQUIRED)
endif()

set(kagzi_sdk_include_dir "${CMAKE_CURRENT_LIST_DIR}/../../plugin-api/include")
cmake_path(NORMAL_PATH kagzi_sdk_include_dir)

add_executable(kagzi_hpp_test "${CMAKE_CURRENT_LIST_DIR}/kagzi_hpp_test.cc")
target_include_directories(kagzi_hpp_test PRIVATE "${kagzi_sdk_include_dir}")
set_target_properties(kagzi_hpp_test PROPERTIES
  CXX_STANDARD 20
  CXX_STANDARD_REQUIRED ON
  CXX_EXTENSIONS OFF)
target_compile_options(kagzi_hpp_test PRIVATE
  -Wall -Wextra -Wshadow -Wold-style-cast -Wnon-virtual-dtor -pedantic -Werror)
target_link_libraries(kagzi_hpp_test PRIVATE GTest::gtest_main)
gtest_discover_tests(kagzi_hpp_test DISCOVERY_TIMEOUT 30 PROPERTIES LABELS unit TIMEOUT 120)

add_executable(kagzi_hpp_1_1_test "${CMAKE_CURRENT_LIST_DIR}/kagzi_hpp_1_1_test.cc")
target_include_directories(kagzi_hpp_1_1_test PRIVATE "${kagzi_sdk_include_dir}")
set_target_properties(kagzi_hpp_1_1_test PROPERTIES
  CXX_STANDARD 20
  CXX_STANDARD_REQUIRED ON
  CXX_EXTENSIONS OFF)
target_compile_options(kagzi_hpp_1_1_test PRIVATE
  -Wall -Wextra -Wshadow -Wold-style-cast -Wnon-virtual-dtor -pedantic -Werror)
target_link_libraries(kagzi_hpp_1_1_test PRIVATE GTest::gtest_main Threads::Threads)
gtest_discover_tests(kagzi_hpp_1_1_test DISCOVERY_TIMEOUT 30 PROPERTIES LABELS unit TIMEOUT 120)

# The C side of the ABI freeze: C11, strict.
add_library(kagzi_abi_freeze_c OBJECT "${CMAKE_CURRENT_LIST_DIR}/abi_freeze_c.c")
target_include_directories(kagzi_abi_freeze_c PRIVATE "${kagzi_sdk_include_dir}")
set_target_properties(kagzi_abi_freeze_c PROPERTIES
  C_STANDARD 11
  C_STANDARD_REQUIRED ON
  C_EXTENSIONS OFF)
target_compile_options(kagzi_abi_freeze_c PRIVATE
  -Wall -Wextra -pedantic -Werror)

add_executable(abi_freeze_test
  "${CMAKE_CURRENT_LIST_DIR}/abi_freeze_test.cc"
  $<TARGET_OBJECTS:kagzi_abi_freeze_c>)
target_include_directories(abi_freeze_test PRIVATE "${kagzi_sdk_include_dir}")
set_target_properties(abi_freeze_test PROPERTIES
  CXX_STANDARD 20
  CXX_STANDARD_REQUIRED ON
  CXX_EXTENSIONS OFF)
target_compile_options(abi_freeze_test PRIVATE
  -Wall -Wextra -pedantic -Werror)
target_link_libraries(abi_freeze_test PRIVATE GTest::gtest_main)
gtest_discover_tests(abi_freeze_test DISCOVERY_TIMEOUT 30 PROPERTIES LABELS unit TIMEOUT 120)
