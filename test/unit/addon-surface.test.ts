/**
 * The addon's declaration in lib/ceph/native.ts names exactly what the compiled addon exports:
 * its top-level exports and each wrapper class's prototype methods. No cluster needed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { addon } from '../../lib/ceph/native.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SOURCE = join(ROOT, 'lib', 'ceph', 'native.ts');

function memberNames(owner: string, elements: ts.NodeArray<ts.TypeElement>): string[] {
  return elements.map((member) => {
    assert.ok(member.name !== undefined && ts.isIdentifier(member.name), `${owner} has only plainly named members`);
    return member.name.text;
  });
}

/**
 * The member names of each interface declared in lib/ceph/native.ts, read from its syntax tree,
 * and under 'Addon.classes' those of the type of Addon's classes.
 */
function declaredMembers(): Map<string, string[]> {
  const file = ts.createSourceFile(SOURCE, readFileSync(SOURCE, 'utf8'), ts.ScriptTarget.Latest);
  const declared = new Map<string, string[]>();
  for (const statement of file.statements) {
    if (!ts.isInterfaceDeclaration(statement)) continue;
    const name = statement.name.text;
    // Members inherited through `extends` would be missed.
    assert.equal(statement.heritageClauses, undefined, `${name} extends nothing`);
    declared.set(name, memberNames(name, statement.members));
    for (const member of statement.members) {
      if (ts.isPropertySignature(member) && member.type && ts.isTypeLiteralNode(member.type)) {
        const owner = `${name}.${member.name.getText(file)}`;
        declared.set(owner, memberNames(owner, member.type.members));
      }
    }
  }
  return declared;
}

const declared = declaredMembers();

function sorted(names: Iterable<string>): string[] {
  return [...names].sort();
}

function members(name: string): string[] {
  const names = declared.get(name);
  assert.ok(names, `lib/ceph/native.ts declares ${name}`);
  return sorted(names);
}

function prototypeMethods(prototype: object): string[] {
  return sorted(Object.getOwnPropertyNames(prototype).filter((name) => name !== 'constructor'));
}

test('Addon declares exactly the top-level exports', () => {
  assert.deepEqual(sorted(Object.keys(addon)), members('Addon'));
});

test('Addon.classes declares exactly the exported wrapper classes', () => {
  assert.deepEqual(sorted(Object.keys(addon.classes)), members('Addon.classes'));
});

// Each class of Addon.classes is declared by the interface of its name.
const classes: Record<string, { prototype: object }> = addon.classes;
const prototypes: Array<[string, object]> = [
  ...members('Addon.classes').map((name): [string, object] => [name, classes[name].prototype]),
  ['NativeCancelToken', addon.CancelToken.prototype],
  ['NativeOutlet', addon.Outlet.prototype],
  ['NativeInlet', addon.Inlet.prototype],
];

for (const [name, prototype] of prototypes) {
  test(`${name} declares exactly the class's prototype methods`, () => {
    assert.deepEqual(prototypeMethods(prototype), members(name));
  });
}
