// Case-insensitive comparison of header names and tokens without making a lower-cased copy (the hot paths compare a
// few names per message; toLowerCase allocates a string for every name that has a capital letter).

/** Whether `text` equals `lower` (lower-case ASCII) ignoring ASCII case. */
export function equalsIgnoringCase(text: string, lower: string): boolean {
  const length = lower.length;
  if (text.length !== length) return false;
  for (let i = 0; i < length; i++) {
    let code = text.charCodeAt(i);
    if (code >= 65 && code <= 90) code += 32; // A-Z to a-z
    if (code !== lower.charCodeAt(i)) return false;
  }
  return true;
}
