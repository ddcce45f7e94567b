# mcompress_add_plugin(NAME SOURCES... [TOOLKITS toolkit...]): one shared
# library per plugin, linked against the shared plugin API (mcompress::sdk) and
# the SDK toolkits it names (models, pruning, training, quantization, formats),
# placed where the host looks for plugins in the build tree and installed next
# to the host.
function(mcompress_add_plugin name)
  cmake_parse_arguments(ARG "" "" "TOOLKITS" ${ARGN})
  add_library(${name} MODULE ${ARG_UNPARSED_ARGUMENTS})
  target_link_libraries(${name} PRIVATE mcompress::sdk)
  foreach(toolkit ${ARG_TOOLKITS})
    target_link_libraries(${name} PRIVATE mcompress::${toolkit})
  endforeach()
  set_property(GLOBAL APPEND PROPERTY MCOMPRESS_PLUGINS ${name})
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
