# Corosync membership and quorum: daemon/cluster.c, the probe that drives it, and the
# integration test that runs a two-node cluster with a qnetd tie-breaker in namespaces.
# Debian packages: libcpg-dev libquorum-dev libvotequorum-dev libcorosync-common-dev to
# build; corosync corosync-qdevice corosync-qnetd nftables to run test_cluster.
pkg_check_modules(CPG REQUIRED IMPORTED_TARGET libcpg)
pkg_check_modules(QUORUM REQUIRED IMPORTED_TARGET libquorum)
pkg_check_modules(VOTEQUORUM REQUIRED IMPORTED_TARGET libvotequorum)

add_library(ringft_cluster STATIC ${CMAKE_SOURCE_DIR}/daemon/cluster.c)
target_link_libraries(ringft_cluster PUBLIC PkgConfig::CPG PkgConfig::QUORUM
                      PkgConfig::VOTEQUORUM)

add_executable(ft_cluster_probe ${CMAKE_SOURCE_DIR}/tests/ft_cluster_probe.c)
target_link_libraries(ft_cluster_probe PRIVATE ringft_cluster)

add_test(NAME test_cluster
         COMMAND ${CMAKE_SOURCE_DIR}/tests/test_cluster.sh $<TARGET_FILE:ft_cluster_probe>)
set_tests_properties(test_cluster PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 180
                     LABELS integration)
