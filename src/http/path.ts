// Request path safety: decode once, refuse anything that could leave the root, hide dotfiles.

/** `%2F` in any case: an encoded `/` (the encoded backslash `%5C` is refused after decoding, with the raw one). */
const ENCODED_SLASH = /%2f/i;

/** Refusal statuses returned instead of a path. */
export const PATH_BAD_REQUEST = 400;
export const PATH_NOT_FOUND = 404;

/**
 * Decodes a request path (the part of the target before `?`) into a clean absolute path such as `/dir/file.txt`
 * (a trailing `/` is kept), or returns a status: 400 for an encoding that is invalid or could escape the root
 * (`..` or `.` segments, NUL and control bytes, backslashes, a raw `#`, and an encoded slash `%2F`: a `/` inside a segment
 * names no file, and a path that splits differently before and after decoding is how filters are fooled, so it is
 * refused rather than served as `/`), 404 for a dotfile segment when dotfiles are denied
 * (`.well-known` is always allowed). Empty segments (`//`) collapse. Decoding happens exactly once, so a double
 * encoding such as `%252e%252e` names a literal file `%2e%2e` inside the root (404 when absent), never `..`.
 */
export function decodeRequestPath(rawPath: string, allowDotfiles: boolean): string | number {
  if (rawPath.charCodeAt(0) !== 47 /* / */) return PATH_BAD_REQUEST;
  // A fragment is never part of a request target (RFC 9112 §3.2); Bun leaves a raw `#` in the URL.
  if (rawPath.includes("#")) return PATH_BAD_REQUEST;
  let decoded = rawPath;
  if (rawPath.includes("%")) {
    if (ENCODED_SLASH.test(rawPath)) return PATH_BAD_REQUEST;
    try {
      decoded = decodeURIComponent(rawPath);
    } catch {
      return PATH_BAD_REQUEST; // malformed percent-encoding or invalid UTF-8
    }
  }
  for (let i = 0; i < decoded.length; i++) {
    const code = decoded.charCodeAt(i);
    if (code < 0x20 || code === 0x7f || code === 92 /* \ */) return PATH_BAD_REQUEST;
  }
  const segments = decoded.split("/");
  const kept: string[] = [];
  for (const segment of segments) {
    if (segment === "") continue;
    if (segment === "." || segment === "..") return PATH_BAD_REQUEST;
    if (!allowDotfiles && segment.charCodeAt(0) === 46 /* . */ && segment !== ".well-known") return PATH_NOT_FOUND;
    kept.push(segment);
  }
  if (kept.length === 0) return "/";
  const joined = `/${kept.join("/")}`;
  return decoded.endsWith("/") ? `${joined}/` : joined;
}

/** Whether `realPath` (already resolved through symlinks) lies inside `realRoot` (also resolved). */
export function isInsideRoot(realPath: string, realRoot: string): boolean {
  if (realPath === realRoot) return true;
  const prefix = realRoot.endsWith("/") ? realRoot : `${realRoot}/`;
  return realPath.startsWith(prefix);
}
