/**
 * Ceph's INI dialect (ceph.conf): reading one, and looking a setting up for
 * a client the way librados does ([client.ID], then [client], then
 * [global]). The CLI's own configuration file is written in it too.
 */
import { readFile } from 'node:fs/promises';
import { fromSystem, invalidArgument } from './errors.js';

/** Section name -> normalized key -> value. */
export type ConfSections = Map<string, Map<string, string>>;

/** Ceph treats spaces, dashes and underscores alike in keys ('mon host' is 'mon_host'). */
export function normalizeConfKey(key: string): string {
  return key.trim().replace(/[\s-]+/g, '_');
}

/**
 * Parses INI text: `[section]` headers, `key = value` lines, `#` and `;`
 * comments (whole lines, or after whitespace), values optionally in double
 * quotes, a trailing backslash continuing a line. `source` names the file in
 * errors, with the line number.
 */
export function parseConf(text: string, source: string): ConfSections {
  const sections: ConfSections = new Map();
  let current: Map<string, string> | undefined;
  const lines = text.split(/\r?\n/);
  for (let index = 0; index < lines.length; index++) {
    const number = index + 1;
    let line = lines[index];
    while (line.endsWith('\\') && index + 1 < lines.length) line = line.slice(0, -1) + lines[++index];
    line = stripComment(line).trim();
    if (line === '') continue;
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header) {
      const name = header[1].trim();
      current = sections.get(name) ?? new Map<string, string>();
      sections.set(name, current);
      continue;
    }
    const equals = line.indexOf('=');
    if (equals <= 0) {
      throw invalidArgument('parse', source, `line ${number}: expected [section] or key = value, got ${JSON.stringify(line.slice(0, 80))}`);
    }
    if (current === undefined) {
      throw invalidArgument('parse', source, `line ${number}: ${line.slice(0, equals).trim()} comes before any [section]`);
    }
    let value = line.slice(equals + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    current.set(normalizeConfKey(line.slice(0, equals)), value);
  }
  return sections;
}

function stripComment(line: string): string {
  const match = /(^|\s)[#;]/.exec(line);
  return match ? line.slice(0, match.index) : line;
}

/** Reads and parses a configuration file; a missing or unreadable file is a typed error naming it. */
export async function readConf(path: string): Promise<ConfSections> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw fromSystem(error, 'read', path, `cannot read configuration file ${path}`);
  }
  return parseConf(text, path);
}

/** A client's setting as librados reads it: [client.ID], then [client], then [global]. */
export function lookupClientSetting(sections: ConfSections, user: string, key: string): string | undefined {
  const wanted = normalizeConfKey(key);
  for (const section of [`client.${user}`, 'client', 'global']) {
    const value = sections.get(section)?.get(wanted);
    if (value !== undefined) return value;
  }
  return undefined;
}
