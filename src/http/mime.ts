// Content types by file extension: every type in nginx's mime.types, plus modern web types; charset for text.

/** Extension (lower case, no dot) to media type. Starts from nginx 1.22 `mime.types` and adds current web types. */
const TYPES_BY_EXTENSION: Record<string, string> = {
  // nginx mime.types
  html: "text/html",
  htm: "text/html",
  shtml: "text/html",
  css: "text/css",
  xml: "text/xml",
  gif: "image/gif",
  jpeg: "image/jpeg",
  jpg: "image/jpeg",
  js: "application/javascript",
  atom: "application/atom+xml",
  rss: "application/rss+xml",
  mml: "text/mathml",
  txt: "text/plain",
  jad: "text/vnd.sun.j2me.app-descriptor",
  wml: "text/vnd.wap.wml",
  htc: "text/x-component",
  avif: "image/avif",
  png: "image/png",
  svg: "image/svg+xml",
  svgz: "image/svg+xml",
  tif: "image/tiff",
  tiff: "image/tiff",
  wbmp: "image/vnd.wap.wbmp",
  webp: "image/webp",
  ico: "image/x-icon",
  jng: "image/x-jng",
  bmp: "image/x-ms-bmp",
  woff: "font/woff",
  woff2: "font/woff2",
  jar: "application/java-archive",
  war: "application/java-archive",
  ear: "application/java-archive",
  json: "application/json",
  hqx: "application/mac-binhex40",
  doc: "application/msword",
  pdf: "application/pdf",
  ps: "application/postscript",
  eps: "application/postscript",
  ai: "application/postscript",
  rtf: "application/rtf",
  m3u8: "application/vnd.apple.mpegurl",
  kml: "application/vnd.google-earth.kml+xml",
  kmz: "application/vnd.google-earth.kmz",
  xls: "application/vnd.ms-excel",
  eot: "application/vnd.ms-fontobject",
  ppt: "application/vnd.ms-powerpoint",
  odg: "application/vnd.oasis.opendocument.graphics",
  odp: "application/vnd.oasis.opendocument.presentation",
  ods: "application/vnd.oasis.opendocument.spreadsheet",
  odt: "application/vnd.oasis.opendocument.text",
  pptx: "application/vnd.openxmlformats-officedocument.presentationml.presentation",
  xlsx: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
  docx: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
  wmlc: "application/vnd.wap.wmlc",
  wasm: "application/wasm",
  "7z": "application/x-7z-compressed",
  cco: "application/x-cocoa",
  jardiff: "application/x-java-archive-diff",
  jnlp: "application/x-java-jnlp-file",
  run: "application/x-makeself",
  pl: "application/x-perl",
  pm: "application/x-perl",
  prc: "application/x-pilot",
  pdb: "application/x-pilot",
  rar: "application/x-rar-compressed",
  rpm: "application/x-redhat-package-manager",
  sea: "application/x-sea",
  swf: "application/x-shockwave-flash",
  sit: "application/x-stuffit",
  tcl: "application/x-tcl",
  tk: "application/x-tcl",
  der: "application/x-x509-ca-cert",
  pem: "application/x-x509-ca-cert",
  crt: "application/x-x509-ca-cert",
  xpi: "application/x-xpinstall",
  xhtml: "application/xhtml+xml",
  xspf: "application/xspf+xml",
  zip: "application/zip",
  bin: "application/octet-stream",
  exe: "application/octet-stream",
  dll: "application/octet-stream",
  deb: "application/octet-stream",
  dmg: "application/octet-stream",
  iso: "application/octet-stream",
  img: "application/octet-stream",
  msi: "application/octet-stream",
  msp: "application/octet-stream",
  msm: "application/octet-stream",
  mid: "audio/midi",
  midi: "audio/midi",
  kar: "audio/midi",
  mp3: "audio/mpeg",
  ogg: "audio/ogg",
  m4a: "audio/x-m4a",
  ra: "audio/x-realaudio",
  "3gpp": "video/3gpp",
  "3gp": "video/3gpp",
  ts: "video/mp2t",
  mp4: "video/mp4",
  mpeg: "video/mpeg",
  mpg: "video/mpeg",
  mov: "video/quicktime",
  webm: "video/webm",
  flv: "video/x-flv",
  m4v: "video/x-m4v",
  mng: "video/x-mng",
  asx: "video/x-ms-asf",
  asf: "video/x-ms-asf",
  wmv: "video/x-ms-wmv",
  avi: "video/x-msvideo",
  // beyond nginx: types browsers and tools expect today
  mjs: "application/javascript",
  cjs: "application/javascript",
  map: "application/json",
  jsonld: "application/ld+json",
  webmanifest: "application/manifest+json",
  md: "text/markdown",
  markdown: "text/markdown",
  csv: "text/csv",
  tsv: "text/tab-separated-values",
  ics: "text/calendar",
  vtt: "text/vtt",
  yaml: "application/yaml",
  yml: "application/yaml",
  toml: "application/toml",
  otf: "font/otf",
  ttf: "font/ttf",
  apng: "image/apng",
  jxl: "image/jxl",
  heic: "image/heic",
  heif: "image/heif",
  flac: "audio/flac",
  wav: "audio/wav",
  weba: "audio/webm",
  opus: "audio/ogg",
  aac: "audio/aac",
  ogv: "video/ogg",
  mkv: "video/x-matroska",
  m4s: "video/iso.segment",
  mpd: "application/dash+xml",
  gz: "application/gzip",
  tgz: "application/gzip",
  br: "application/x-brotli",
  zst: "application/zstd",
  tar: "application/x-tar",
  bz2: "application/x-bzip2",
  xz: "application/x-xz",
  epub: "application/epub+zip",
  sh: "application/x-sh",
};

/** Type for a file with no known extension (nginx's default_type). */
const DEFAULT_TYPE = "application/octet-stream";

/** Types whose content is text even though the top-level type is not `text/`. */
const TEXT_LIKE = new Set([
  "application/javascript",
  "application/json",
  "application/xml",
  "application/xhtml+xml",
  "application/atom+xml",
  "application/rss+xml",
  "application/ld+json",
  "application/manifest+json",
  "application/yaml",
  "application/toml",
  "image/svg+xml",
  "application/x-sh",
  "application/xspf+xml",
  "application/vnd.google-earth.kml+xml",
  "application/dash+xml",
  "application/vnd.apple.mpegurl",
  "application/x-perl",
  "application/x-tcl",
]);

/** Media types whose bytes compress well (text, JSON, SVG, WebAssembly, uncompressed fonts and images). */
const COMPRESSIBLE_EXTRA = new Set([
  "application/wasm",
  "image/x-icon",
  "image/x-ms-bmp",
  "font/ttf",
  "font/otf",
  "application/vnd.ms-fontobject",
]);

/** The Content-Type header value for a media type: `; charset=utf-8` appended for text types. */
function headerValue(type: string): string {
  return type.startsWith("text/") || TEXT_LIKE.has(type) ? `${type}; charset=utf-8` : type;
}

const HEADER_BY_EXTENSION = new Map<string, string>(
  Object.entries(TYPES_BY_EXTENSION).map(([extension, type]) => [extension, headerValue(type)]),
);

/** Content-Type header value for a file path (by its last extension, case-insensitive). */
export function contentTypeFor(filePath: string): string {
  const slash = filePath.lastIndexOf("/");
  const dot = filePath.lastIndexOf(".");
  if (dot <= slash + 1) return DEFAULT_TYPE; // no extension, or a dotfile name such as ".env"
  return HEADER_BY_EXTENSION.get(filePath.slice(dot + 1).toLowerCase()) ?? DEFAULT_TYPE;
}

/** Whether a Content-Type value names content worth compressing on the fly. */
export function isCompressible(contentType: string): boolean {
  const semicolon = contentType.indexOf(";");
  const type = semicolon < 0 ? contentType : contentType.slice(0, semicolon);
  return type.startsWith("text/") || TEXT_LIKE.has(type) || COMPRESSIBLE_EXTRA.has(type);
}

/** Every extension known (for tests). */
export const KNOWN_EXTENSIONS: readonly string[] = [...HEADER_BY_EXTENSION.keys()];
/** Number of extensions known (for tests and the README). */
export const KNOWN_EXTENSION_COUNT = HEADER_BY_EXTENSION.size;
