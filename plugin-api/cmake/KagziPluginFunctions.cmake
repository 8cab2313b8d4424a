# kagzi_add_plugin(): build a Kagzi workflow plugin (a dlopen()able .so).
#
#   kagzi_add_plugin(<name> [SOURCES] <source>... [OUTPUT_DIRECTORY <dir>])
#
# Creates the MODULE library target <name>, output file <name>.so (no "lib"
# prefix), built the way the plugin ABI requires (see kagzi/plugin.h):
#   - C11 / C++20 at least, position-independent code;
#   - -fvisibility=hidden and -fvisibility-inlines-hidden;
#   - linked with the version script that exports only kagzi_plugin_entry,
#     and with -z defs (an undefined symbol fails the link, not the dlopen());
#   - linked to Kagzi::plugin_api (the SDK headers).
# OUTPUT_DIRECTORY sets where the .so lands. Without it, the Kagzi source tree
# puts plugins in ${CMAKE_BINARY_DIR}/plugins; an out-of-tree project gets
# CMake's default (the current binary directory).
#
# Works in the Kagzi tree (included by plugin-api/CMakeLists.txt) and from the
# installed package (included by KagziPluginConfig.cmake). Needs CMake 3.25.
include_guard(GLOBAL)

if(NOT DEFINED KAGZI_PLUGIN_VERSION_SCRIPT)
  set(KAGZI_PLUGIN_VERSION_SCRIPT "${CMAKE_CURRENT_LIST_DIR}/kagzi-plugin.map")
endif()
# Global, so kagzi_add_plugin() works from any directory of the project.
set_property(GLOBAL PROPERTY KAGZI_PLUGIN_VERSION_SCRIPT "${KAGZI_PLUGIN_VERSION_SCRIPT}")

function(kagzi_add_plugin name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "OUTPUT_DIRECTORY" "SOURCES")
  set(sources ${arg_SOURCES} ${arg_UNPARSED_ARGUMENTS})
  if(NOT sources)
    message(FATAL_ERROR "kagzi_add_plugin(${name}): no source files given")
  endif()
  if(NOT TARGET Kagzi::plugin_api)
    message(FATAL_ERROR "kagzi_add_plugin(${name}): target Kagzi::plugin_api not found; "
                        "call find_package(KagziPlugin) in this directory or a parent")
  endif()
  get_property(version_script GLOBAL PROPERTY KAGZI_PLUGIN_VERSION_SCRIPT)

  add_library(${name} MODULE ${sources})
  target_link_libraries(${name} PRIVATE Kagzi::plugin_api)
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    SUFFIX ".so"
    POSITION_INDEPENDENT_CODE ON
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    LINK_DEPENDS "${version_script}")
  # Minimum standards; a project asking for newer ones keeps them.
  get_property(languages GLOBAL PROPERTY ENABLED_LANGUAGES)
  if(C IN_LIST languages)
    target_compile_features(${name} PRIVATE c_std_11)
  endif()
  if(CXX IN_LIST languages)
    target_compile_features(${name} PRIVATE cxx_std_20)
  endif()
  target_link_options(${name} PRIVATE
    "LINKER:--version-script=${version_script}"
    "LINKER:-z,defs")

  if(arg_OUTPUT_DIRECTORY)
    set(output_directory "${arg_OUTPUT_DIRECTORY}")
  else()
    get_property(output_directory GLOBAL PROPERTY KAGZI_PLUGIN_DEFAULT_OUTPUT_DIRECTORY)
  endif()
  if(output_directory)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${output_directory}")
  endif()
endfunction()
