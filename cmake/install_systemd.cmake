# Installs the systemd unit, written at install time from
# deploy/systemd/kjb.service.in; included when KJB_INSTALL_SYSTEMD is on.

# The unit names the installed binary and config directory, which only
# install time knows (`cmake --install --prefix P` may move them), so it
# is written then. With prefix /usr the config is in /etc, as in
# GNUInstallDirs.
install(CODE "
  set(bindir \"${CMAKE_INSTALL_BINDIR}\")
  set(etc \"${CMAKE_INSTALL_SYSCONFDIR}\")
  if(NOT IS_ABSOLUTE \"\${bindir}\")
    set(bindir \"\${CMAKE_INSTALL_PREFIX}/\${bindir}\")
  endif()
  if(NOT IS_ABSOLUTE \"\${etc}\")
    if(CMAKE_INSTALL_PREFIX MATCHES \"^/(usr/?)?$\")
      set(etc \"/\${etc}\")
    else()
      set(etc \"\${CMAKE_INSTALL_PREFIX}/\${etc}\")
    endif()
  endif()
  set(KJB_BINDIR \"\${bindir}\")
  set(KJB_SYSCONFDIR \"\${etc}\")
  configure_file(\"${CMAKE_SOURCE_DIR}/deploy/systemd/kjb.service.in\"
                 \"${CMAKE_BINARY_DIR}/kjb.service\" @ONLY)
")
install(FILES ${CMAKE_BINARY_DIR}/kjb.service DESTINATION ${KJB_SYSTEMD_UNITDIR})
