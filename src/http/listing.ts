// Directory listings (http.directory_listing): an HTML page of a directory's entries, names escaped.
import { readdirSync } from "node:fs";

const encoder = new TextEncoder();

/** HTML-escapes text for the listing. */
function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * The listing page of `realDirectory` titled by the request's `decodedPath` (dotfiles hidden unless allowed;
 * `.well-known` always shown), or null when the directory cannot be read.
 */
export function directoryListing(
  realDirectory: string,
  decodedPath: string,
  allowDotfiles: boolean,
): Uint8Array | null {
  let names: { name: string; isDirectory: boolean }[];
  try {
    names = readdirSync(realDirectory, { withFileTypes: true })
      .filter((dirent) => allowDotfiles || !dirent.name.startsWith(".") || dirent.name === ".well-known")
      .map((dirent) => ({ name: dirent.name, isDirectory: dirent.isDirectory() }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  } catch {
    return null;
  }
  const title = `Index of ${escapeHtml(decodedPath)}`;
  const items = names.map(({ name, isDirectory }) => {
    const suffix = isDirectory ? "/" : "";
    return `<li><a href="${escapeHtml(encodeURIComponent(name))}${suffix}">${escapeHtml(name)}${suffix}</a></li>`;
  });
  if (decodedPath !== "/") items.unshift('<li><a href="../">../</a></li>');
  const html = `<!doctype html>\n<html><head><meta charset="utf-8"><title>${title}</title></head>\n<body><h1>${title}</h1>\n<ul>\n${items.join("\n")}\n</ul></body></html>\n`;
  return encoder.encode(html);
}

/** Headers of a listing page (never cached by clients: the directory changes). */
export const LISTING_HEADERS: Readonly<Record<string, string>> = {
  "Content-Type": "text/html; charset=utf-8",
  "X-Content-Type-Options": "nosniff",
  "Cache-Control": "no-cache",
};
