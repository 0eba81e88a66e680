# flotilla::flotilla, the library an embedder links, and the CMake package
# that `cmake --install` writes (docs/embedding.md):
#
#   find_package(Flotilla 0.2 CONFIG REQUIRED)
#   target_link_libraries(my_server PRIVATE flotilla::flotilla)
#
# Installed: the libraries, include/flotilla/ (the public API and nothing
# else), FlotillaConfig.cmake, FlotillaConfigVersion.cmake and the targets.
#
# Static (the default): one archive per layer, each exported, and
# flotilla::flotilla links them with their dependencies (RocksDB, gRPC,
# protobuf, OpenSSL, spdlog, Boost), which FlotillaConfig.cmake finds.
# Shared (-DFLOTILLA_SHARED=ON): every layer's objects in libflotilla.so with
# a SOVERSION; its dependencies are its own, so the package finds none.
include(CMakePackageConfigHelpers)

set(flotilla_layers flotilla_raft flotilla_log flotilla_logdb flotilla_transport flotilla_proto flotilla_engine)
set_target_properties(flotilla_raft PROPERTIES EXPORT_NAME raft)
set_target_properties(flotilla_log PROPERTIES EXPORT_NAME log)
set_target_properties(flotilla_logdb PROPERTIES EXPORT_NAME logdb)
set_target_properties(flotilla_transport PROPERTIES EXPORT_NAME transport)
set_target_properties(flotilla_proto PROPERTIES EXPORT_NAME proto)
set_target_properties(flotilla_engine PROPERTIES EXPORT_NAME engine)

if(FLOTILLA_SHARED)
  # Before 1.0 a minor version may change the API (include/flotilla/version.h),
  # so the SOVERSION is major.minor until then.
  if(PROJECT_VERSION_MAJOR EQUAL 0)
    set(flotilla_soversion ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
  else()
    set(flotilla_soversion ${PROJECT_VERSION_MAJOR})
  endif()
  # The layers' objects (compiled position-independent), and what they link.
  set(flotilla_objects)
  foreach(layer ${flotilla_layers})
    list(APPEND flotilla_objects $<TARGET_OBJECTS:${layer}>)
  endforeach()
  find_package(RocksDB CONFIG REQUIRED)
  find_package(gRPC CONFIG REQUIRED)
  find_package(Protobuf REQUIRED)
  find_package(OpenSSL REQUIRED)
  find_package(spdlog REQUIRED)
  add_library(flotilla SHARED ${flotilla_objects})
  set_target_properties(flotilla PROPERTIES LINKER_LANGUAGE CXX)
  target_link_libraries(flotilla PRIVATE RocksDB::rocksdb-shared gRPC::grpc++ protobuf::libprotobuf
                                         OpenSSL::Crypto spdlog::spdlog Threads::Threads)
  target_include_directories(flotilla PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
                                             $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  set_target_properties(flotilla PROPERTIES VERSION ${PROJECT_VERSION}
                                            SOVERSION ${flotilla_soversion}
                                            OUTPUT_NAME flotilla)
  set(flotilla_installed flotilla)
else()
  add_library(flotilla INTERFACE)
  target_link_libraries(flotilla INTERFACE flotilla_engine)
  set(flotilla_installed flotilla ${flotilla_layers})
endif()
add_library(flotilla::flotilla ALIAS flotilla)

if(NOT FLOTILLA_INSTALL)
  return()
endif()

# Component "library"; the daemon's files are component "daemon"
# (tools/nodehost/CMakeLists.txt).
install(TARGETS ${flotilla_installed}
        EXPORT FlotillaTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT library
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT library
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT library)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/flotilla
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT library
        FILES_MATCHING PATTERN "*.h")

set(flotilla_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/Flotilla)
install(EXPORT FlotillaTargets NAMESPACE flotilla:: DESTINATION ${flotilla_cmake_dir}
        COMPONENT library)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/FlotillaConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/FlotillaConfig.cmake
                              INSTALL_DESTINATION ${flotilla_cmake_dir})
# Before 1.0 only the same minor version is compatible (see version.h).
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(flotilla_compatibility SameMinorVersion)
else()
  set(flotilla_compatibility SameMajorVersion)
endif()
write_basic_package_version_file(${PROJECT_BINARY_DIR}/FlotillaConfigVersion.cmake
                                 COMPATIBILITY ${flotilla_compatibility})
install(FILES ${PROJECT_BINARY_DIR}/FlotillaConfig.cmake
              ${PROJECT_BINARY_DIR}/FlotillaConfigVersion.cmake
        DESTINATION ${flotilla_cmake_dir} COMPONENT library)
