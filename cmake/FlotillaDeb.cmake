# The Debian package, built with CPack (docs/packaging.md):
#
#   cmake --build build && (cd build && cpack -G DEB)
#
# One package, flotilla, holding the nodehost daemon with its systemd unit,
# man page, default config and system user, and the library with its headers
# and CMake package. Its dependencies are computed by dpkg-shlibdeps.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME flotilla)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "The Flotilla authors <flotilla@example.org>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "multi-group Raft engine and sharded key-value daemon")
set(CPACK_PACKAGE_DESCRIPTION
    "Flotilla runs thousands of Raft groups (shards) in one process on a fixed pool\n\
of worker threads, with one batched RocksDB log and one multiplexed gRPC\n\
transport. This package holds the nodehost daemon, a sharded key-value\n\
store with a systemd unit, its command-line client and offline LogDB\n\
inspector, and the Flotilla library with its headers and CMake package.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(flotilla_deb_dir ${PROJECT_SOURCE_DIR}/tools/nodehost/debian)
file(WRITE ${PROJECT_BINARY_DIR}/debian-control/conffiles "/etc/nodehost/nodehost.toml\n")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${flotilla_deb_dir}/postinst ${flotilla_deb_dir}/prerm ${flotilla_deb_dir}/postrm
    ${PROJECT_BINARY_DIR}/debian-control/conffiles)
# Both components in the one package.
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_GROUPING ALL_COMPONENTS_IN_ONE)
set(CPACK_COMPONENTS_ALL library daemon)
set(CPACK_STRIP_FILES ON)
include(CPack)
