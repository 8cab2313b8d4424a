#!/usr/bin/env bash
# The plugin SDK as kagzi-dev installs it: install component "dev" of a build
# tree into an empty prefix, then build tests/packaging/sdk_plugin from a copy
# outside the source tree, with the CMake package and with pkg-config, and
# check what the plugins export (kagzi_plugin_entry and nothing else).
#
# Usage: tests/packaging/sdk-test.sh BUILD_DIR
set -euo pipefail

build_dir="$(cd "${1:?usage: sdk-test.sh BUILD_DIR}" && pwd)"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# As a package does: the tree's own prefix, under a staging root.
install_prefix="$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build_dir/CMakeCache.txt")"
[[ -n $install_prefix ]] || fail "no CMAKE_INSTALL_PREFIX in $build_dir/CMakeCache.txt"
root="$tmp/root"
prefix="$root$install_prefix"
DESTDIR="$root" cmake --install "$build_dir" --component dev >"$tmp/install.log" ||
  fail "cmake --install --component dev: $(cat "$tmp/install.log")"
echo "installed the SDK into $prefix:"
(cd "$prefix" && find . -type f | sort | sed 's/^/  /')
for f in include/kagzi/plugin.h include/kagzi/kagzi.hpp share/cmake/KagziPlugin/KagziPluginConfig.cmake \
  share/pkgconfig/kagzi-plugin.pc share/kagzi/kagzi-plugin.map; do
  [[ -f $prefix/$f ]] || fail "the dev component lacks $f"
done
# Nothing architecture-specific: kagzi-dev is Architecture: all.
while IFS= read -r -d '' f; do
  [[ "$(head -c 4 "$f" | tr -d '\0')" != $'\x7fELF' ]] || fail "the dev component contains a binary: $f"
done < <(find "$prefix" -type f -print0)

# exports_only_entry SO: the dynamic symbol table defines kagzi_plugin_entry only.
exports_only_entry() {
  local defined
  defined="$(nm -D --defined-only "$1" | awk '{print $NF}' | sort -u)"
  [[ $defined == kagzi_plugin_entry ]] || fail "$1 exports: $(echo "$defined" | tr '\n' ' ')"
  echo "ok: $(basename "$1") exports only kagzi_plugin_entry"
}

project="$tmp/myflows"
cp -r "$here/sdk_plugin" "$project"

# 1. CMake: find_package(KagziPlugin) + kagzi_add_plugin().
cmake -S "$project" -B "$project/build" -DCMAKE_PREFIX_PATH="$prefix" -DGREET_VERSION=1 \
  >"$tmp/cmake.log" 2>&1 || fail "configuring with the CMake package: $(cat "$tmp/cmake.log")"
cmake --build "$project/build" >"$tmp/build.log" 2>&1 || fail "build: $(cat "$tmp/build.log")"
[[ -f $project/build/greet_later.so ]] || fail "no greet_later.so from the CMake build"
exports_only_entry "$project/build/greet_later.so"
grep -q "KagziPlugin_DIR:PATH=$prefix/share/cmake/KagziPlugin" "$project/build/CMakeCache.txt" ||
  fail "find_package did not use the installed package"

# 2. pkg-config. For a /usr tree (the packages) the .pc file holds absolute
# paths, found here through the sysroot; for any other prefix it is
# relocatable (paths relative to the file's own place).
export PKG_CONFIG_PATH="$prefix/share/pkgconfig"
if grep -q 'pcfiledir' "$prefix/share/pkgconfig/kagzi-plugin.pc"; then
  echo "kagzi-plugin.pc is relocatable (prefix $install_prefix)"
else
  echo "kagzi-plugin.pc has absolute paths (prefix $install_prefix); using PKG_CONFIG_SYSROOT_DIR"
  grep -qx "prefix=$install_prefix" "$prefix/share/pkgconfig/kagzi-plugin.pc" ||
    fail "kagzi-plugin.pc: prefix is not $install_prefix"
  export PKG_CONFIG_SYSROOT_DIR="$root"
fi
flags="$(pkg-config --cflags --libs kagzi-plugin)" || fail "pkg-config kagzi-plugin"
echo "pkg-config --cflags --libs kagzi-plugin: $flags"
[[ $flags == *"-I$prefix/include"* || $flags == *"-I$prefix/share/pkgconfig/../../include"* ]] ||
  fail "the include directory is not under $prefix: $flags"
if [[ $flags != *"--version-script=$prefix/share/kagzi/kagzi-plugin.map"* &&
  $flags != *"--version-script=$prefix/share/pkgconfig/../../share/kagzi/kagzi-plugin.map"* ]]; then
  # pkg-config applies the sysroot to -I and -L only: point the linker at the staged map.
  [[ -n ${PKG_CONFIG_SYSROOT_DIR:-} ]] || fail "the version script is not under $prefix: $flags"
  flags="${flags//--version-script=$install_prefix/--version-script=$prefix}"
fi
[[ "$(pkg-config --modversion kagzi-plugin)" == "$(head -n1 "$here/../../VERSION")" ]] ||
  fail "pkg-config version $(pkg-config --modversion kagzi-plugin) is not VERSION's"
# shellcheck disable=SC2086 # the flags are words
c++ -std=c++20 -O2 -DGREET_VERSION=2 "$project/greet_later.cc" $flags -o "$tmp/greet_later-2.so" ||
  fail "c++ with pkg-config flags"
exports_only_entry "$tmp/greet_later-2.so"
# And a C plugin with plugin.h alone.
cat >"$tmp/tiny.c" <<'EOF'
#include <kagzi/plugin.h>
static kagzi_status tiny_run(const kagzi_host *host, kagzi_context *ctx, void *user_data) {
  (void)user_data;
  return host->set_output(ctx, "true", 4);
}
static const kagzi_workflow workflows[] = {
    {.struct_size = sizeof(kagzi_workflow), .abi_major = KAGZI_ABI_MAJOR,
     .abi_minor = KAGZI_ABI_MINOR, .name = "tiny", .version = 1, .run = tiny_run},
};
static const kagzi_plugin plugin = {.struct_size = sizeof(kagzi_plugin),
                                    .abi_major = KAGZI_ABI_MAJOR, .abi_minor = KAGZI_ABI_MINOR,
                                    .name = "tiny", .version = "1.0.0", .workflow_count = 1,
                                    .workflows = workflows};
KAGZI_EXPORT const kagzi_plugin *kagzi_plugin_entry(uint16_t major, uint16_t minor) {
  (void)minor;
  return major == KAGZI_ABI_MAJOR ? &plugin : NULL;
}
EOF
# shellcheck disable=SC2086
cc -std=c11 -Wall -Wextra -Werror -O2 "$tmp/tiny.c" $flags -o "$tmp/tiny.so" || fail "cc with pkg-config flags"
exports_only_entry "$tmp/tiny.so"
echo "sdk-test: PASS"
