# cmake --install and the Debian package (issue 16, part 6): ftd and ftctl, the
# systemd unit with the installed paths, the example configurations, man pages
# (scdoc), bash completion, README and docs. `cpack -G DEB` in a build
# directory makes ringft_VERSION_ARCH.deb for prefix /usr (tests/test_package.sh).
include(GNUInstallDirs)

install(TARGETS ftd ftctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# The unit directory, relative to the prefix wherever systemd.pc puts it under
# its own prefix (Debian 12: /lib/systemd/system, rootprefix empty): so that a
# /usr/local install goes to /usr/local/lib/systemd/system (systemd looks
# there) and the package's to /usr/lib/systemd/system, never outside the prefix
# of `cmake --install --prefix DIR`.
set(_ft_unitdir lib/systemd/system)
if(PKG_CONFIG_EXECUTABLE)
  execute_process(
    COMMAND ${PKG_CONFIG_EXECUTABLE} --variable=systemdsystemunitdir
            --define-variable=prefix=/FT_PREFIX --define-variable=rootprefix=/FT_PREFIX
            --define-variable=root_prefix=/FT_PREFIX systemd
    OUTPUT_VARIABLE _ft_pc_unitdir OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET
    RESULT_VARIABLE _ft_pc_result)
  if(_ft_pc_result EQUAL 0 AND _ft_pc_unitdir MATCHES "^/FT_PREFIX/(.+)$")
    set(_ft_unitdir ${CMAKE_MATCH_1})
  endif()
endif()
set(FT_SYSTEMD_UNITDIR ${_ft_unitdir} CACHE STRING
    "Where ftd@.service goes: relative to the install prefix, or absolute")

# The unit names the installed ftd. It is generated when installing, not when
# configuring, because the prefix is known only then: the build's default is
# /usr/local, `cmake --install --prefix DIR` and CPack (prefix /usr) choose
# another. CPACK_SET_DESTDIR below makes CPack install with the real prefix
# under DESTDIR, so CMAKE_INSTALL_PREFIX here is /usr for the package.
file(CONFIGURE OUTPUT ${PROJECT_BINARY_DIR}/install_unit.cmake @ONLY CONTENT [[
# Made by cmake/install.cmake: ftd@.service for this install's prefix.
set(FT_BINDIR "${CMAKE_INSTALL_PREFIX}/@CMAKE_INSTALL_BINDIR@")
set(FT_DOCDIR "${CMAKE_INSTALL_PREFIX}/@CMAKE_INSTALL_DOCDIR@")
# One copy per destination: cpack and cmake --install may run side by side.
string(MD5 key "$ENV{DESTDIR}${CMAKE_INSTALL_PREFIX}")
set(unit "@PROJECT_BINARY_DIR@/systemd/${key}/ftd@.service")
configure_file("@PROJECT_SOURCE_DIR@/systemd/ftd@.service.in" "${unit}" @ONLY)
if(IS_ABSOLUTE "@FT_SYSTEMD_UNITDIR@")
  set(dest "@FT_SYSTEMD_UNITDIR@")
else()
  set(dest "${CMAKE_INSTALL_PREFIX}/@FT_SYSTEMD_UNITDIR@")
endif()
file(INSTALL DESTINATION "${dest}" TYPE FILE FILES "${unit}")
]])
install(SCRIPT ${PROJECT_BINARY_DIR}/install_unit.cmake)

# Examples only: a live /etc/ftd/NAME.conf is the operator's to write.
install(FILES systemd/ftd-example.conf systemd/corosync-example.conf
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
# README.md and the documents it links to, at the same relative paths.
install(FILES README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ctl/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR}/ctl)
install(FILES guest/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR}/guest)
install(DIRECTORY docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/docs
        FILES_MATCHING PATTERN "*.md" PATTERN "man" EXCLUDE)

# The Pacemaker resource agent ocf:ringft:ftd (docs/pacemaker.md). Pacemaker
# looks in /usr/lib/ocf/resource.d whatever the prefix: right for the package;
# a /usr/local install's agent has to be linked there by hand.
set(FT_OCF_DIR lib/ocf/resource.d/ringft CACHE STRING
    "Where the OCF resource agent goes: relative to the install prefix, or absolute")
install(PROGRAMS ocf/ftd DESTINATION ${FT_OCF_DIR})

install(FILES completion/ftd completion/ftctl
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions)

# Man pages: docs/man/PAGE.SECTION.scd through scdoc, gzipped (Debian policy).
find_program(SCDOC scdoc)
if(SCDOC)
  set(_ft_man_outputs)
  foreach(page ftd.8 ftctl.8 ftd.conf.5)
    string(REGEX MATCH "[0-9]$" section ${page})
    set(src ${PROJECT_SOURCE_DIR}/docs/man/${page}.scd)
    set(out ${PROJECT_BINARY_DIR}/man/${page})
    add_custom_command(
      OUTPUT ${out}.gz
      COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/man
      COMMAND sh -c "\"$0\" <\"$1\" >\"$2\"" ${SCDOC} ${src} ${out}
      COMMAND gzip -9nf ${out}
      DEPENDS ${src}
      COMMENT "scdoc: man page ${page}"
      VERBATIM)
    list(APPEND _ft_man_outputs ${out}.gz)
    install(FILES ${out}.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
  endforeach()
  add_custom_target(man ALL DEPENDS ${_ft_man_outputs})
else()
  message(WARNING "scdoc not found (Debian package scdoc): no man pages are built or installed")
endif()

# The Debian package: `cpack -G DEB`.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME ringft)
set(CPACK_PACKAGE_VENDOR ringft)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "ringft maintainers <maintainers@users.noreply.r-seed-d420998d.example>"
    CACHE STRING "The package's Maintainer field")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "fault-tolerant KVM virtual machines by continuous checkpointing")
# The long description; CPack puts the summary above it.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "ftd runs a KVM guest and checkpoints it every few milliseconds to a secondary
node that keeps an exact replica; guest output leaves only once its
checkpoint is acknowledged, so when the primary fails the secondary runs the
guest on without losing or repeating anything it showed. ftctl asks a
running ftd for its status, metrics and events, and fails over, switches
over or re-protects by hand. The systemd unit ftd@NAME runs one guest from
/etc/ftd/NAME.conf (examples in /usr/share/doc/ringft/examples).")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_INSTALL_PREFIX /usr)
# Install with the real prefix under DESTDIR, so the generated unit says
# /usr/bin/ftd (not the staging directory).
set(CPACK_SET_DESTDIR ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
# Debian ships stripped binaries (their debug information in -dbgsym packages).
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "corosync, corosync-qdevice")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "corosync-qnetd, pacemaker, resource-agents")
if(CMAKE_PROJECT_HOMEPAGE_URL)
  set(CPACK_DEBIAN_PACKAGE_HOMEPAGE ${CMAKE_PROJECT_HOMEPAGE_URL})
endif()
# systemd learns of the new or removed unit (what dh_installsystemd adds for a
# template unit: no instance is enabled or started).
foreach(script postinst postrm)
  if(script STREQUAL postinst)
    set(_ft_when configure)
  else()
    set(_ft_when remove)
  endif()
  file(WRITE ${PROJECT_BINARY_DIR}/debian.in/${script}
       "#!/bin/sh\nset -e\nif [ \"$1\" = ${_ft_when} ] && [ -d /run/systemd/system ]; then\n\tsystemctl --system daemon-reload >/dev/null || true\nfi\n")
  file(COPY ${PROJECT_BINARY_DIR}/debian.in/${script} DESTINATION ${PROJECT_BINARY_DIR}/debian
       FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                        WORLD_READ WORLD_EXECUTE)
endforeach()
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_BINARY_DIR}/debian/postinst ${PROJECT_BINARY_DIR}/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
