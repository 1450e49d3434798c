// Test helpers for TLS: a throw-away certificate authority and certificates made with openssl at run time.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { makeTempDir } from "./http.ts";

/** Runs a command to completion (asynchronously, so servers in this process keep serving); rejects on failure. */
export async function run(command: string[], input?: string): Promise<string> {
  const child = Bun.spawn(command, {
    stdin: input === undefined ? "ignore" : new Blob([input]),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  if (code !== 0) throw new Error(`${command.join(" ")} exited with ${code}: ${err.trim()}`);
  return out;
}

export interface IssueOptions {
  /** Subject common name. */
  commonName: string;
  /** subjectAltName DNS entries (default: none). */
  dnsNames?: string[];
  /** subjectAltName IP entries (default: none). */
  ips?: string[];
  /** Validity window; default: from an hour ago for a day. */
  notBefore?: Date;
  notAfter?: Date;
  /** Key algorithm; EC P-256 is the fast default. */
  keyType?: "ec" | "rsa";
  /** Which CA signs it (this one, or an intermediate issued with isCa); default: this one. */
  issuer?: { certFile: string; keyFile: string };
  /** Make an intermediate CA certificate (it can sign others) instead of a server/client one. */
  isCa?: boolean;
}

export interface IssuedCertificate {
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: string;
  readonly key: string;
  /** Hex serial as openssl prints it (upper case). */
  readonly serial: string;
}

export interface TestCa {
  readonly dir: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: string;
  /** A certificate signed by this CA, valid for server and client authentication. */
  issue(name: string, options: IssueOptions): Promise<IssuedCertificate>;
  /** A certificate signed by itself (no CA): for clients that present a certificate nobody trusts. */
  selfSigned(name: string, commonName: string): Promise<IssuedCertificate>;
  /** Deletes every file made here. */
  remove(): void;
}

/** openssl's ASN.1 time for `openssl ca -startdate/-enddate` (YYYYMMDDHHMMSSZ). */
function asn1Time(date: Date): string {
  return `${date.toISOString().replace(/[-:T]/g, "").slice(0, 14)}Z`;
}

/** Makes a CA ("hps test CA") in a new temporary directory. Keys are made now and never leave that directory. */
export async function makeTestCa(label = "hps test CA"): Promise<TestCa> {
  const dir = makeTempDir("hps-tls-");
  const certFile = join(dir, "ca.pem");
  const keyFile = join(dir, "ca.key");
  await run([
    "openssl",
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    keyFile,
    "-out",
    certFile,
    "-days",
    "2",
    "-subj",
    `/CN=${label}`,
  ]);
  // `openssl ca` (unlike `openssl x509 -req`) takes explicit start and end dates, so expired and
  // not-yet-valid certificates can be made too.
  const config = join(dir, "ca.cnf");
  await Bun.write(join(dir, "index.txt"), "");
  await Bun.write(join(dir, "serial"), `${Date.now().toString(16).padStart(16, "0")}\n`);
  await Bun.write(
    config,
    [
      "[ca]",
      "default_ca = test",
      "[test]",
      `database = ${join(dir, "index.txt")}`,
      `new_certs_dir = ${dir}`,
      `serial = ${join(dir, "serial")}`,
      "default_md = sha256",
      "policy = any",
      "unique_subject = no",
      "copy_extensions = none",
      "[any]",
      "commonName = supplied",
      "",
    ].join("\n"),
  );
  const cert = await Bun.file(certFile).text();

  const makeKey = async (path: string, keyType: "ec" | "rsa") => {
    const algorithm =
      keyType === "ec" ? ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"] : ["-algorithm", "RSA"];
    await run(["openssl", "genpkey", ...algorithm, "-out", path]);
  };

  const ca: TestCa = {
    dir,
    certFile,
    keyFile,
    cert,
    async issue(name, options) {
      const signer = options.issuer ?? ca;
      const key = join(dir, `${name}.key`);
      const csr = join(dir, `${name}.csr`);
      const ext = join(dir, `${name}.ext`);
      const out = join(dir, `${name}.pem`);
      await makeKey(key, options.keyType ?? "ec");
      await run(["openssl", "req", "-new", "-key", key, "-out", csr, "-subj", `/CN=${options.commonName}`]);
      const names = [
        ...(options.dnsNames ?? []).map((n) => `DNS:${n}`),
        ...(options.ips ?? []).map((ip) => `IP:${ip}`),
      ];
      await Bun.write(
        ext,
        [
          ...(names.length > 0 ? [`subjectAltName = ${names.join(",")}`] : []),
          ...(options.isCa
            ? ["basicConstraints = critical, CA:TRUE", "keyUsage = critical, keyCertSign, cRLSign"]
            : ["basicConstraints = CA:FALSE", "extendedKeyUsage = serverAuth, clientAuth"]),
          "",
        ].join("\n"),
      );
      const nowMs = Date.now();
      const notBefore = options.notBefore ?? new Date(nowMs - 3_600_000);
      const notAfter = options.notAfter ?? new Date(nowMs + 86_400_000);
      await run([
        "openssl",
        "ca",
        "-batch",
        "-notext",
        "-config",
        config,
        "-cert",
        signer.certFile,
        "-keyfile",
        signer.keyFile,
        "-in",
        csr,
        "-out",
        out,
        "-extfile",
        ext,
        "-startdate",
        asn1Time(notBefore),
        "-enddate",
        asn1Time(notAfter),
      ]);
      const pem = await Bun.file(out).text();
      const serial = (await run(["openssl", "x509", "-in", out, "-noout", "-serial"])).trim().replace(/^serial=/, "");
      return { certFile: out, keyFile: key, cert: pem, key: await Bun.file(key).text(), serial };
    },
    async selfSigned(name, commonName) {
      const key = join(dir, `${name}.key`);
      const out = join(dir, `${name}.pem`);
      await makeKey(key, "ec");
      await run(["openssl", "req", "-x509", "-key", key, "-out", out, "-days", "1", "-subj", `/CN=${commonName}`]);
      const serial = (await run(["openssl", "x509", "-in", out, "-noout", "-serial"])).trim().replace(/^serial=/, "");
      return { certFile: out, keyFile: key, cert: await Bun.file(out).text(), key: await Bun.file(key).text(), serial };
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return ca;
}

/** A server certificate for 127.0.0.1 and localhost (and any extra names). */
export function issueLocalhost(ca: TestCa, name: string, extraNames: string[] = []): Promise<IssuedCertificate> {
  return ca.issue(name, { commonName: "localhost", dnsNames: ["localhost", ...extraNames], ips: ["127.0.0.1"] });
}

/** The serial number of the certificate a server presents for `serverName` (openssl s_client; "" when none). */
export async function presentedSerial(port: number, serverName: string | null): Promise<string> {
  const sni = serverName === null ? ["-noservername"] : ["-servername", serverName];
  const child = Bun.spawn(["openssl", "s_client", "-connect", `127.0.0.1:${port}`, ...sni], {
    stdin: new Blob(["Q\n"]),
    stdout: "pipe",
    stderr: "ignore",
  });
  const timer = setTimeout(() => child.kill(), 10_000);
  const text = await new Response(child.stdout).text();
  await child.exited;
  clearTimeout(timer);
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(text)?.[0];
  if (pem === undefined) return "";
  return (await run(["openssl", "x509", "-noout", "-serial"], pem)).trim().replace(/^serial=/, "");
}

export interface CommandResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to completion, whatever its exit status (bounded: killed after `timeoutMs`). */
export async function runAny(command: string[], input?: string, timeoutMs = 15_000): Promise<CommandResult> {
  const child = Bun.spawn(command, {
    stdin: input === undefined ? "ignore" : new Blob([input]),
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => child.kill(), timeoutMs);
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  clearTimeout(timer);
  return { exitCode, stdout, stderr };
}

/** curl against a test server: -s, a bounded time, the CA given; `args` come last. */
export function curl(caFile: string, args: string[]): Promise<CommandResult> {
  return runAny(["curl", "-sS", "--max-time", "10", "--cacert", caFile, ...args]);
}
