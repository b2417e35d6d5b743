// The map: Leaflet (window.L, from the server's own copy), no base map from the internet —
// a graticule instead, so the page works offline. Footprints and XYZ layers are overlays
// that the layer control can switch on and off.

const L = window.L;
let map = null;
let layers = null;
let footprints = null;
const overlays = new Map(); // name -> layer

export function createMap(element) {
  map = L.map(element, { worldCopyJump: true, minZoom: 1 }).setView([30, 10], 2);
  map.attributionControl.setPrefix("Leaflet");
  graticule().addTo(map);
  footprints = L.featureGroup().addTo(map);
  layers = L.control.layers(null, {}, { collapsed: false }).addTo(map);
  return map;
}

function graticule() {
  const group = L.layerGroup();
  const style = { color: "#8aa1b4", weight: 0.6, interactive: false };
  for (let lon = -180; lon <= 180; lon += 15) {
    L.polyline([[-85, lon], [85, lon]], style).addTo(group);
  }
  for (let lat = -75; lat <= 75; lat += 15) {
    L.polyline([[lat, -180], [lat, 180]], { ...style, weight: lat === 0 ? 1.2 : 0.6 })
      .addTo(group);
  }
  return group;
}

// bbox: [west, south, east, north]
export function boundsOf(bbox) {
  return L.latLngBounds([bbox[1], bbox[0]], [bbox[3], bbox[2]]);
}

export function showFootprints(bboxes, label) {
  footprints.clearLayers();
  for (const bbox of bboxes) {
    L.rectangle(boundsOf(bbox), { color: "#d9480f", weight: 2, fill: false })
      .bindTooltip(label).addTo(footprints);
  }
  if (bboxes.length) map.fitBounds(footprints.getBounds(), { maxZoom: 13, padding: [20, 20] });
}

export function showTiles(name, urlTemplate, bbox, { minZoom = 0, maxZoom = 18 } = {}) {
  const old = overlays.get(name);
  if (old) {
    map.removeLayer(old);
    layers.removeLayer(old);
  }
  // Tiles only where there are data: no requests for empty tiles elsewhere.
  const options = { minZoom, maxZoom, opacity: 0.9, attribution: "terracube" };
  if (bbox) options.bounds = boundsOf(bbox).pad(0.05);
  const layer = L.tileLayer(urlTemplate, options).addTo(map);
  overlays.set(name, layer);
  layers.addOverlay(layer, name);
  if (bbox) map.fitBounds(boundsOf(bbox), { maxZoom: 13, padding: [20, 20] });
  return layer;
}

export function invalidate() {
  if (map) map.invalidateSize();
}
