# mcompress_add_plugin(NAME SOURCES...): one shared library per plugin, linked
# against the shared SDK (and through it the shared libtorch), placed where the
# host looks for plugins in the build tree and installed next to the host.
function(mcompress_add_plugin name)
  add_library(${name} MODULE ${ARGN})
  target_link_libraries(${name} PRIVATE mcompress::sdk)
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    LIBRARY_OUTPUT_DIRECTORY "${MCOMPRESS_PLUGIN_BUILD_DIR}")
  if(TARGET mcompress_warnings)
    target_link_libraries(${name} PRIVATE mcompress_warnings)
  endif()
  if(MCOMPRESS_PLUGIN_INSTALL_DIR)
    # <prefix>/lib/mcompress/plugins/x.so finds <prefix>/lib/libmcompress_sdk.so.
    set_target_properties(${name} PROPERTIES INSTALL_RPATH "$ORIGIN/../..")
    install(TARGETS ${name} LIBRARY DESTINATION "${MCOMPRESS_PLUGIN_INSTALL_DIR}")
  endif()
endfunction()
