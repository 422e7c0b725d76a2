// Lists every public value, function, constructor, method and property of an installed package,
// and every member of its interfaces and type aliases, whose declared type is, takes or returns
// `any`, through the TypeScript compiler's own view of the
// package's types (the exports map's `types`, resolved as an application would).
// Usage: node no-any.mjs APP_DIR ENTRY_FILE  -> prints offenders as JSON.
import { createRequire } from 'node:module';
import { join } from 'node:path';

const [appDir, entry] = process.argv.slice(2);
const ts = createRequire(import.meta.url)('typescript');
const options = {
  strict: true, noEmit: true, target: ts.ScriptTarget.ES2022,
  module: entry.endsWith('.cts') ? ts.ModuleKind.Node16 : ts.ModuleKind.ES2022,
  moduleResolution: entry.endsWith('.cts') ? ts.ModuleResolutionKind.Node16 : ts.ModuleResolutionKind.Bundler,
  lib: ['lib.es2022.d.ts', 'lib.dom.d.ts', 'lib.esnext.disposable.d.ts'],
};
const program = ts.createProgram([join(appDir, entry)], options);
const checker = program.getTypeChecker();
const source = program.getSourceFile(join(appDir, entry));
const importDecl = source.statements.find((s) => ts.isImportDeclaration(s) || ts.isImportEqualsDeclaration(s));
const spec = ts.isImportDeclaration(importDecl) ? importDecl.moduleSpecifier : importDecl.moduleReference.expression;
const module = checker.getSymbolAtLocation(spec);
if (!module) throw new Error(`the package's types do not resolve from ${entry}`);

const isAny = (type) => (type.flags & ts.TypeFlags.Any) !== 0;
const offenders = [];
const checkSignatures = (name, signatures) => {
  for (const sig of signatures) {
    for (const p of sig.getParameters()) {
      if (isAny(checker.getTypeOfSymbol(p))) offenders.push(`${name}(${p.name}: any)`);
    }
    if (isAny(sig.getReturnType())) offenders.push(`${name}(): any`);
  }
};
// Only what the package declares: `Error`'s own members (`prepareStackTrace` from Node's
// types, say) are the platform's, inherited by GatehouseError.
const ours = (symbol) => (symbol.declarations ?? []).some((d) => d.getSourceFile().fileName.includes('/@gatehouse/verify/'));
let seen = 0;
for (const sym of checker.getExportsOfModule(module)) {
  const name = sym.getName();
  // The raw wasm exports (`InitOutput`) are wasm-bindgen's plumbing, not the package's API.
  if (name === 'InitOutput') continue;
  const target = sym.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(sym) : sym;
  const decl = target.valueDeclaration ?? target.declarations?.[0];
  if (!decl) continue;
  seen += 1;
  // Interfaces and type aliases (the claims, the options): each member, a level deep.
  if (target.flags & (ts.SymbolFlags.Interface | ts.SymbolFlags.TypeAlias)) {
    const declared = checker.getDeclaredTypeOfSymbol(target);
    if (isAny(declared)) offenders.push(`type ${name}: any`);
    for (const member of declared.getProperties().filter(ours)) {
      const memberType = checker.getTypeOfSymbolAtLocation(member, decl);
      if (isAny(memberType)) offenders.push(`${name}.${member.name}: any`);
      checkSignatures(`${name}.${member.name}`, memberType.getCallSignatures());
    }
    checkSignatures(name, declared.getCallSignatures());
    if (!(target.flags & ts.SymbolFlags.Value)) continue;
  }
  const type = checker.getTypeOfSymbolAtLocation(target, decl);
  if (isAny(type)) offenders.push(`${name}: any`);
  checkSignatures(name, type.getCallSignatures());
  checkSignatures(`new ${name}`, type.getConstructSignatures());
  if (target.flags & ts.SymbolFlags.Class) {
    const instance = checker.getDeclaredTypeOfSymbol(target);
    for (const member of instance.getProperties().filter(ours)) {
      const memberType = checker.getTypeOfSymbolAtLocation(member, decl);
      if (isAny(memberType)) offenders.push(`${name}.${member.name}: any`);
      checkSignatures(`${name}.${member.name}`, memberType.getCallSignatures());
    }
    for (const member of checker.getPropertiesOfType(type).filter(ours)) {
      if (member.name === 'prototype') continue;
      checkSignatures(`${name}.${member.name}`, checker.getTypeOfSymbolAtLocation(member, decl).getCallSignatures());
    }
  }
}
console.log(JSON.stringify({ seen, offenders }));
