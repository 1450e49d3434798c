// PEM text: the labelled base64 blocks of a certificate chain or key file, found without decoding them.

/** One "-----BEGIN <label>----- … -----END <label>-----" block, its text kept whole for the parsers. */
export interface PemBlock {
  readonly label: string;
  readonly text: string;
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;
const BEGIN_LINE = /-----BEGIN ([A-Z0-9 ]+)-----/g;

/** Every PEM block in `text`, in order; text between blocks (comments, bag attributes) is ignored, as OpenSSL does. */
export function pemBlocks(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  for (const match of text.matchAll(BLOCK)) blocks.push({ label: match[1]!, text: `${match[0]}\n` });
  return blocks;
}

/**
 * The label of the first "-----BEGIN <label>-----" line that no whole block holds (a file cut short, typically read
 * while being written), or null. The TLS library refuses a certificate file like that when a listener opens.
 */
export function unfinishedBlock(text: string): string | null {
  const whole = [...text.matchAll(BLOCK)];
  let next = 0;
  for (const begin of text.matchAll(BEGIN_LINE)) {
    while (next < whole.length && whole[next]!.index + whole[next]![0].length <= begin.index) next++;
    const block = whole[next];
    if (block === undefined || begin.index < block.index) return begin[1]!;
  }
  return null;
}

/** Labels of the private-key blocks OpenSSL writes (PKCS#8, SEC1, PKCS#1). */
export const KEY_LABELS: ReadonlySet<string> = new Set(["PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"]);
export const ENCRYPTED_KEY_LABEL = "ENCRYPTED PRIVATE KEY";
export const CERTIFICATE_LABEL = "CERTIFICATE";
