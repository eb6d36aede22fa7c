# Sourced by the device scripts: point pkg-config at the .debs that .deps/unpack-debs.sh unpacked
# under /opt/deps (libyaml, cJSON, cmocka are missing on the GPU machine), so CMake finds them.
if [ -d /opt/deps/usr/lib/x86_64-linux-gnu/pkgconfig ]; then
  sed -i 's|=/usr|=/opt/deps/usr|g' /opt/deps/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc
  export PKG_CONFIG_PATH=/opt/deps/usr/lib/x86_64-linux-gnu/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
fi
