# The fuzz targets, shared by the libFuzzer build (CMakeLists.txt, clang,
# scripts/fuzz.sh) and the corpus replay tests of the normal build
# (replay.cmake, included from tests/unit/CMakeLists.txt).
#
#   json               core/validation: ValidateJson, ValidateName,
#                      ValidateIdempotencyKey, SanitizeText, IsUuid
#   config             core/config: ApplyToml, ApplyValue, ParseDuration,
#                      DescribeConfig round trip, RedactDatabaseUrl
#   ctl_args           ctl/cli + ctl/checks: the kagzictl command line and
#                      every check made before the database is contacted
#   ctl_render         ctl/render: human and --json output of hostile rows
#   plugin_descriptor  daemon/plugin_host: the descriptor checks, through
#                      PluginRegistry::Scan and a real plugin file
set(KAGZI_FUZZ_DIR "${CMAKE_CURRENT_LIST_DIR}")
set(KAGZI_FUZZ_TARGETS json config ctl_args ctl_render plugin_descriptor)

set(KAGZI_FUZZ_json_SOURCES fuzz_json.cc)
set(KAGZI_FUZZ_json_LIBS kagzi_core)
set(KAGZI_FUZZ_config_SOURCES fuzz_config.cc)
set(KAGZI_FUZZ_config_LIBS kagzi_core)
set(KAGZI_FUZZ_ctl_args_SOURCES fuzz_ctl_args.cc)
set(KAGZI_FUZZ_ctl_args_LIBS kagzictl_lib)
set(KAGZI_FUZZ_ctl_render_SOURCES fuzz_ctl_render.cc)
set(KAGZI_FUZZ_ctl_render_LIBS kagzictl_lib)
set(KAGZI_FUZZ_plugin_descriptor_SOURCES fuzz_plugin_descriptor.cc)
set(KAGZI_FUZZ_plugin_descriptor_LIBS kagzi_daemon)

# kagzi_add_fuzz_target(NAME KIND): KIND "libfuzzer" makes fuzz_<NAME>
# (clang, -fsanitize=fuzzer); KIND "replay" makes fuzz_replay_<NAME>, the
# same entry function under replay_main.cc.
function(kagzi_add_fuzz_target name kind)
  set(sources)
  foreach(source IN LISTS KAGZI_FUZZ_${name}_SOURCES)
    list(APPEND sources "${KAGZI_FUZZ_DIR}/${source}")
  endforeach()
  if(kind STREQUAL "libfuzzer")
    set(target fuzz_${name})
    add_executable(${target} ${sources})
    target_link_options(${target} PRIVATE -fsanitize=fuzzer)
  else()
    set(target fuzz_replay_${name})
    add_executable(${target} ${sources} "${KAGZI_FUZZ_DIR}/replay_main.cc")
  endif()
  target_include_directories(${target} PRIVATE "${KAGZI_FUZZ_DIR}")
  target_include_directories(${target} SYSTEM PRIVATE ${RAPIDJSON_INCLUDE_DIRS})
  target_link_libraries(${target} PRIVATE ${KAGZI_FUZZ_${name}_LIBS})
  if(name STREQUAL "plugin_descriptor")
    # The plugin file the registry loads; its entry calls back into the
    # target, which therefore exports its symbols.
    add_library(${target}_plugin MODULE "${KAGZI_FUZZ_DIR}/descriptor_plugin.cc")
    target_link_libraries(${target}_plugin PRIVATE Kagzi::plugin_api)
    set_target_properties(${target}_plugin PROPERTIES PREFIX "" OUTPUT_NAME "${target}_plugin")
    set_target_properties(${target} PROPERTIES ENABLE_EXPORTS ON)
    target_compile_definitions(${target} PRIVATE
      "KAGZI_FUZZ_DESCRIPTOR_PLUGIN=\"$<TARGET_FILE:${target}_plugin>\"")
    add_dependencies(${target} ${target}_plugin)
  endif()
endfunction()
