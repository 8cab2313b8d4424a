# Debian and RPM packages with CPack, one package per install component:
#
#   component  deb              rpm              contents
#   kagzi      kagzi            kagzi            kagzid, kagzictl, unit, config, user, ...
#   dev        kagzi-dev (all)  kagzi-devel      the plugin SDK (headers, CMake, pkg-config)
#   examples   kagzi-examples   kagzi-examples   hello.so, welcome_email.so in the plugins dir
#
# Build them from a tree configured with CMAKE_INSTALL_PREFIX=/usr:
#   cmake --preset release -DKAGZI_BUILD_TESTS=OFF && cmake --build --preset release
#   (cd build/release && cpack -G DEB && cpack -G RPM)      # or: make package
# The version is the project's (VERSION file), package release 1. Runtime
# library dependencies are found by dpkg-shlibdeps and rpm's find-requires.
# The rpm is built on Debian: its library requirements carry Debian's
# sonames, so for Fedora/RHEL rebuild it there from the same sources.
# include()d at the end of the top-level CMakeLists.txt.

if(NOT CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  message(STATUS "Packages (cpack) need CMAKE_INSTALL_PREFIX=/usr; this tree installs to "
                 "${CMAKE_INSTALL_PREFIX}, so its packages would not work")
endif()

set(CPACK_PACKAGE_NAME kagzi)
set(CPACK_PACKAGE_VENDOR "Kagzi")
set(CPACK_PACKAGE_CONTACT "Kagzi maintainers <maintainers@kagzi.invalid>")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "durable workflow engine for native code")
set(CPACK_PACKAGING_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(CPACK_PACKAGE_DIRECTORY "${PROJECT_BINARY_DIR}/packages")
set(CPACK_STRIP_FILES ON)
set(CPACK_GENERATOR DEB)
find_program(KAGZI_RPMBUILD rpmbuild)
if(KAGZI_RPMBUILD)
  list(APPEND CPACK_GENERATOR RPM)
endif()

set(CPACK_COMPONENTS_ALL kagzi dev examples)
set(CPACK_COMPONENTS_GROUPING IGNORE)
set(CPACK_COMPONENT_EXAMPLES_DEPENDS kagzi)

set(CPACK_COMPONENT_KAGZI_DESCRIPTION
    "durable workflow engine for native code: daemon and CLI
Kagzi runs workflows written in C or C++ as shared objects (plugins) built
against a small, stable C ABI. kagzid loads the plugins, claims runs from
PostgreSQL, records each step's result once, parks sleeping runs without
holding a thread and resumes the runs of a daemon that died. kagzictl
starts runs and shows where they are.
This package holds kagzid (a systemd service running as the kagzi user),
kagzictl, the default configuration and kagzi-db-init, which creates the
PostgreSQL role and database on a local server.")
set(CPACK_COMPONENT_DEV_DESCRIPTION
    "durable workflow engine for native code: plugin SDK
Headers (kagzi/plugin.h, the C ABI; kagzi/kagzi.hpp, the C++20 wrapper),
the CMake package KagziPlugin (kagzi_add_plugin) and the pkg-config file
kagzi-plugin for building Kagzi workflow plugins, and the plugin guide.")
set(CPACK_COMPONENT_EXAMPLES_DESCRIPTION
    "durable workflow engine for native code: example workflows
The example workflow plugins hello (C), welcome_email (C++, with a durable
sleep) and order_saga (retries, events, child runs, parallel steps),
installed into kagzid's plugins directory /usr/lib/kagzi/plugins.")

# --- Debian -----------------------------------------------------------------
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_ENABLE_COMPONENT_DEPENDS ON)
set(CPACK_DEBIAN_COMPRESSION_TYPE xz)

set(CPACK_DEBIAN_KAGZI_PACKAGE_NAME kagzi)
set(CPACK_DEBIAN_KAGZI_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_KAGZI_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_KAGZI_PACKAGE_RECOMMENDS "postgresql")
set(CPACK_DEBIAN_KAGZI_PACKAGE_SUGGESTS "kagzi-examples, kagzi-dev")
set(kagzi_deb_scripts "${PROJECT_BINARY_DIR}/packaging/deb")
set(CPACK_DEBIAN_KAGZI_PACKAGE_CONTROL_EXTRA
    "${kagzi_deb_scripts}/postinst;${kagzi_deb_scripts}/prerm;${kagzi_deb_scripts}/postrm;${kagzi_deb_scripts}/conffiles")
set(CPACK_DEBIAN_KAGZI_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_DEBIAN_DEV_PACKAGE_NAME kagzi-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_ARCHITECTURE all)
# kagzi.hpp includes RapidJSON.
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "rapidjson-dev")
set(CPACK_DEBIAN_DEV_PACKAGE_SUGGESTS "cmake, pkg-config, kagzi")

set(CPACK_DEBIAN_EXAMPLES_PACKAGE_NAME kagzi-examples)
set(CPACK_DEBIAN_EXAMPLES_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_EXAMPLES_PACKAGE_SHLIBDEPS ON)

# --- RPM --------------------------------------------------------------------
set(CPACK_RPM_COMPONENT_INSTALL ON)
set(CPACK_RPM_FILE_NAME RPM-DEFAULT)
set(CPACK_RPM_PACKAGE_RELEASE 1)
set(CPACK_RPM_PACKAGE_LICENSE "Unspecified")
set(CPACK_RPM_PACKAGE_GROUP "System Environment/Daemons")
set(CPACK_RPM_PACKAGE_AUTOREQPROV ON)
set(CPACK_RPM_PACKAGE_RELOCATABLE OFF)
# No /usr/lib/.build-id links: they would clash between packages built alike.
set(CPACK_RPM_SPEC_MORE_DEFINE "%define _build_id_links none")
# Directories that belong to the filesystem (or to systemd, bash-completion,
# man) and must not be owned by these packages.
set(CPACK_RPM_EXCLUDE_FROM_AUTO_FILELIST_ADDITION
    /etc /usr/lib/systemd /usr/lib/systemd/system /usr/lib/sysusers.d /usr/lib/tmpfiles.d
    /usr/sbin /usr/share/bash-completion /usr/share/bash-completion/completions
    /usr/share/man /usr/share/man/man1 /usr/share/man/man7 /usr/share/man/man8
    /usr/share/doc /usr/share/cmake /usr/share/pkgconfig)

set(CPACK_RPM_KAGZI_PACKAGE_NAME kagzi)
set(CPACK_RPM_KAGZI_USER_FILELIST "%config(noreplace) /etc/kagzi/kagzid.toml")
set(CPACK_RPM_KAGZI_POST_INSTALL_SCRIPT_FILE "${CMAKE_CURRENT_LIST_DIR}/maintainer/postinst.sh")
set(CPACK_RPM_KAGZI_PRE_UNINSTALL_SCRIPT_FILE "${CMAKE_CURRENT_LIST_DIR}/maintainer/prerm.sh")
set(CPACK_RPM_KAGZI_POST_UNINSTALL_SCRIPT_FILE "${CMAKE_CURRENT_LIST_DIR}/maintainer/postrm.sh")

set(CPACK_RPM_DEV_PACKAGE_NAME kagzi-devel)
set(CPACK_RPM_DEV_PACKAGE_ARCHITECTURE noarch)
set(CPACK_RPM_DEV_PACKAGE_REQUIRES "rapidjson-devel")
set(CPACK_RPM_DEV_PACKAGE_GROUP "Development/Libraries")

set(CPACK_RPM_EXAMPLES_PACKAGE_NAME kagzi-examples)
set(CPACK_RPM_EXAMPLES_PACKAGE_REQUIRES "kagzi = ${PROJECT_VERSION}")

include(CPack)
