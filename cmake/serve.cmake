# `grok serve` (src/serve/): libmicrohttpd for HTTP (Debian: libmicrohttpd-dev),
# and the chat page (src/serve/page.{html,js,css}) compiled into the library as
# byte arrays, so the page works with nothing but the server reachable.
pkg_check_modules(MHD REQUIRED IMPORTED_TARGET libmicrohttpd)
target_link_libraries(grokcore PUBLIC PkgConfig::MHD)

set(GK_EMBED_OUT ${CMAKE_BINARY_DIR}/embed)
function(gk_embed file symbol)
  set(in ${CMAKE_SOURCE_DIR}/src/serve/${file})
  set(out ${GK_EMBED_OUT}/${symbol}.c)
  add_custom_command(OUTPUT ${out}
                     COMMAND ${CMAKE_COMMAND} -DIN=${in} -DOUT=${out} -DNAME=${symbol}
                             -P ${CMAKE_SOURCE_DIR}/cmake/embed.cmake
                     DEPENDS ${in} ${CMAKE_SOURCE_DIR}/cmake/embed.cmake
                     COMMENT "Embedding ${file}")
  target_sources(grokcore PRIVATE ${out})
endfunction()
gk_embed(page.html gk_serve_page)
gk_embed(page.js gk_serve_page_js)
gk_embed(page.css gk_serve_page_css)
