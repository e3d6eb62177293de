//! `#[derive(PersonalRecord)]` for [`privacy-pledge`](https://docs.rs/privacy-pledge):
//! a host struct whose fields are `PersonalInfo<_, _>` values of one subject
//! becomes a *personal record*, sealed, opened, indexed and reported as a
//! whole.
//!
//! Use it through the main crate, which re-exports it (feature `derive`, on
//! by default): `use privacy_pledge::PersonalRecord;`. The generated code
//! names the main crate by its absolute path `::privacy_pledge`, so the
//! dependency must keep that name.
//!
//! ```ignore
//! use privacy_pledge::PersonalRecord;
//! use privacy_pledge::PersonalInfo;
//! use privacy_pledge::data::{EmailAddress, FullName};
//! use privacy_pledge::purpose::Transaction;
//!
//! #[derive(PersonalRecord)]
//! #[pledge(sealed = "CustomerRow")] // default: `SealedCustomer`
//! pub struct Customer {
//!     pub name: PersonalInfo<FullName, Transaction>,
//!     #[pledge(lookup)] // adds `email_lookup: LookupToken<EmailAddress>`
//!     pub email: PersonalInfo<EmailAddress, Transaction>,
//!     #[pledge(not_personal)] // copied as it is
//!     pub newsletter: bool,
//! }
//! ```
//!
//! # Attributes
//!
//! | where | attribute | meaning |
//! |---|---|---|
//! | struct | `#[pledge(sealed = "Name")]` | the name of the generated sealed struct (default `Sealed` + the struct's name) |
//! | field | `#[pledge(lookup)]` | also keep a lookup token (blind index) of the field, in a column `<field>_lookup`; only for a purpose that sees plaintext (R6) |
//! | field | `#[pledge(not_personal)]` | the field holds no personal information: copied as it is (its type must implement `privacy_pledge::record::NotPersonal`, `Clone` and `Debug`) |
//!
//! # What is refused, at compile time
//!
//! Each error points at the offending field or attribute and names the rule:
//!
//! - a field that is not `PersonalInfo<Kind, Purpose>` and is not marked
//!   `#[pledge(not_personal)]` (R1);
//! - a field marked `#[pledge(not_personal)]` whose type does not implement
//!   `privacy_pledge::record::NotPersonal` (R1/R9): `PersonalInfo`, a data
//!   kind such as `EmailAddress`, or a type holding one (`Option`, `Vec`, …)
//!   would be kept unsealed. This is decided by the compiler on the field's
//!   type, not on how it is written, so a data kind imported under another
//!   name is refused too; the error points at the field's type;
//! - `#[pledge(lookup)]` on a field that is not personal, or on a field held
//!   for `Improvement`, which never sees plaintext (R6);
//! - enums, unions, tuple and unit structs, generic structs, a struct without
//!   any `PersonalInfo` field, a field named `subject` (the sealed record's
//!   own column), and unknown `pledge` keys.
//!
//! The sealed struct also gets `SealedRecord::COLUMNS` and row
//! constructors (`from_row` for rusqlite, `from_pg_row` for `postgres`,
//! `sqlx::FromRow`), each where the main crate's feature for that client is
//! on: the generated code calls the main crate's `__sealed_rows!` macro,
//! which the main crate defines per feature.
//!
//! Fields of different subjects are refused at run time, by
//! `Custodian::seal_record` and `Custodian::open_record`, before anything is
//! sealed or opened.
//!
//! The generated code, the choice of one audit event per field, and the
//! runtime checks are documented in the main crate's `record` module.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{
    Attribute, Data, DeriveInput, Fields, GenericArgument, Ident, LitStr, PathArguments, Type,
    Visibility,
};

/// Derives `privacy_pledge::record::PersonalRecord` for a struct of
/// `PersonalInfo<_, _>` fields, and generates its sealed counterpart with
/// `privacy_pledge::record::SealedRecord`.
///
/// Attributes: `#[pledge(sealed = "Name")]` on the struct,
/// `#[pledge(lookup)]` and `#[pledge(not_personal)]` on a field. The main
/// crate's `record` module documents the attributes, the refusals, the
/// choice of one audit event per field, and the expansion.
#[proc_macro_derive(PersonalRecord, attributes(pledge))]
pub fn derive_personal_record(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// Collects every error, so that one build reports every offending field.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// What a field is in the record.
enum Role<'a> {
    /// A `PersonalInfo<kind, purpose>`, sealed; with a lookup column if asked.
    Personal {
        kind: &'a Type,
        purpose: &'a Type,
        lookup: Option<Ident>,
    },
    /// Marked `#[pledge(not_personal)]`: copied as it is.
    NotPersonal,
}

struct Field<'a> {
    ident: &'a Ident,
    vis: &'a Visibility,
    ty: &'a Type,
    docs: Vec<&'a Attribute>,
    role: Role<'a>,
}

#[derive(Default)]
struct FieldOptions {
    lookup: Option<Span>,
    not_personal: Option<Span>,
}

fn unknown_key(path: &syn::Path) -> String {
    let key = path
        .get_ident()
        .map_or_else(|| path.to_token_stream().to_string(), Ident::to_string);
    format!(
        "unknown `pledge` key `{key}`; the keys are `lookup` and `not_personal` on a field, \
         and `sealed = \"Name\"` on the struct"
    )
}

fn struct_options(attrs: &[Attribute], errors: &mut Errors) -> Option<Ident> {
    let mut sealed = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("pledge")) {
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("sealed") {
                let lit: LitStr = meta.value()?.parse()?;
                let name: Ident = lit.parse().map_err(|_| {
                    syn::Error::new(
                        lit.span(),
                        "`sealed = \"...\"` names the generated struct: give a type name, \
                         e.g. `sealed = \"CustomerRow\"`",
                    )
                })?;
                if sealed.replace(name).is_some() {
                    return Err(meta.error("`sealed` is given twice"));
                }
                Ok(())
            } else if meta.path.is_ident("lookup") || meta.path.is_ident("not_personal") {
                Err(meta.error(format!(
                    "`#[pledge({})]` belongs on a field, not on the struct",
                    meta.path.to_token_stream()
                )))
            } else {
                Err(meta.error(unknown_key(&meta.path)))
            }
        });
        if let Err(e) = parsed {
            errors.push(e);
        }
    }
    sealed
}

fn field_options(attrs: &[Attribute], errors: &mut Errors) -> FieldOptions {
    let mut options = FieldOptions::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("pledge")) {
        let parsed = attr.parse_nested_meta(|meta| {
            let slot = if meta.path.is_ident("lookup") {
                &mut options.lookup
            } else if meta.path.is_ident("not_personal") {
                &mut options.not_personal
            } else if meta.path.is_ident("sealed") {
                return Err(meta
                    .error("`#[pledge(sealed = \"...\")]` belongs on the struct, not on a field"));
            } else {
                return Err(meta.error(unknown_key(&meta.path)));
            };
            if slot.replace(meta.path.span()).is_some() {
                return Err(meta.error(format!("`{}` is given twice", meta.path.to_token_stream())));
            }
            Ok(())
        });
        if let Err(e) = parsed {
            errors.push(e);
        }
    }
    options
}

/// `(kind, purpose)` if `ty` is written `PersonalInfo<kind, purpose>` (any
/// path ending so).
fn personal_info_args(ty: &Type) -> Option<(&Type, &Type)> {
    let ty = match ty {
        Type::Group(g) => &*g.elem,
        Type::Paren(p) => &*p.elem,
        other => other,
    };
    let Type::Path(path) = ty else { return None };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    if last.ident != "PersonalInfo" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().map(|a| match a {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    });
    match (types.next(), types.next(), types.next()) {
        (Some(Some(kind)), Some(Some(purpose)), None) => Some((kind, purpose)),
        _ => None,
    }
}

fn plan<'a>(input: &'a DeriveInput, errors: &mut Errors) -> syn::Result<Vec<Field<'a>>> {
    let name = &input.ident;
    let named = match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(f) => &f.named,
            Fields::Unnamed(_) => {
                let keyword = &s.struct_token;
                return Err(syn::Error::new_spanned(
                    quote!(#keyword #name),
                    format!(
                        "`PersonalRecord` needs named fields: the sealed record names each \
                         column after its field; give the fields of `{name}` names"
                    ),
                ));
            }
            Fields::Unit => {
                return Err(syn::Error::new(
                    name.span(),
                    format!(
                        "R1: unit struct `{name}` holds no personal information; \
                         `PersonalRecord` is for a struct of `PersonalInfo<_, _>` fields"
                    ),
                ))
            }
        },
        Data::Enum(e) => {
            let keyword = &e.enum_token;
            return Err(syn::Error::new_spanned(
                quote!(#keyword #name),
                format!(
                    "`PersonalRecord` is derived for structs with named fields, not for enum \
                     `{name}`: a record is one subject's fields, sealed and opened together"
                ),
            ));
        }
        Data::Union(u) => {
            let keyword = &u.union_token;
            return Err(syn::Error::new_spanned(
                quote!(#keyword #name),
                format!(
                    "`PersonalRecord` is derived for structs with named fields, not for union \
                     `{name}`"
                ),
            ));
        }
    };
    if !input.generics.params.is_empty() || input.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &input.generics,
            "`PersonalRecord` is derived for structs without generic parameters: \
             write each field's data kind and purpose out",
        ));
    }

    let mut fields = Vec::with_capacity(named.len());
    for f in named {
        let Some(ident) = &f.ident else { continue };
        let options = field_options(&f.attrs, errors);
        let docs = f
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("doc"))
            .collect();
        if ident == "subject" {
            errors.push(syn::Error::new(
                ident.span(),
                "a field named `subject` would clash with the `subject` column of the sealed \
                 record (the subject every field is about); rename the field",
            ));
        }
        let role = match (personal_info_args(&f.ty), options.not_personal) {
            (Some(_), Some(marker)) => {
                errors.push(syn::Error::new(
                    marker,
                    format!(
                        "R9: field `{ident}` is personal information (`PersonalInfo<_, _>`), \
                         sealed at rest; remove `#[pledge(not_personal)]`"
                    ),
                ));
                continue;
            }
            (Some((kind, purpose)), None) => Role::Personal {
                kind,
                purpose,
                lookup: options
                    .lookup
                    .map(|span| format_ident!("{}_lookup", ident, span = span)),
            },
            (None, None) => {
                errors.push(syn::Error::new_spanned(
                    &f.ty,
                    format!(
                        "R1: field `{ident}` is not personal information of the policy \
                         (`PersonalInfo<_, _>`); mark it `#[pledge(not_personal)]` if it \
                         holds none"
                    ),
                ));
                continue;
            }
            (None, Some(_)) => {
                if let Some(span) = options.lookup {
                    errors.push(syn::Error::new(
                        span,
                        format!(
                            "R9: `#[pledge(lookup)]` on field `{ident}`, which is marked \
                             `#[pledge(not_personal)]`: a lookup token indexes a sealed \
                             personal field; a field that is not personal is kept as it is \
                             and needs none"
                        ),
                    ));
                }
                // Whether the type holds personal information is decided by
                // the compiler, on the type itself (`NotPersonal`), in the
                // expansion: a name here could be an alias.
                Role::NotPersonal
            }
        };
        fields.push(Field {
            ident,
            vis: &f.vis,
            ty: &f.ty,
            docs,
            role,
        });
    }

    for f in &fields {
        if let Role::Personal {
            lookup: Some(column),
            ..
        } = &f.role
        {
            if named.iter().any(|g| g.ident.as_ref() == Some(column)) {
                errors.push(syn::Error::new(
                    column.span(),
                    format!(
                        "`#[pledge(lookup)]` adds a column `{column}`, which clashes with the \
                         field of that name; rename the field"
                    ),
                ));
            }
        }
    }
    if named.is_empty() {
        errors.push(syn::Error::new(
            name.span(),
            format!(
                "R1: `{name}` has no fields; `PersonalRecord` is for a struct of \
                 `PersonalInfo<_, _>` fields"
            ),
        ));
    } else if fields.len() == named.len()
        && !fields
            .iter()
            .any(|f| matches!(f.role, Role::Personal { .. }))
    {
        errors.push(syn::Error::new(
            name.span(),
            format!(
                "R1: `{name}` has no `PersonalInfo<_, _>` field; a personal record is sealed \
                 under the subject of its personal fields"
            ),
        ));
    }
    Ok(fields)
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let mut errors = Errors::default();
    let sealed_name = struct_options(&input.attrs, &mut errors);
    let fields = match plan(input, &mut errors) {
        Ok(fields) => fields,
        Err(e) => {
            errors.push(e);
            return errors.finish().map(|()| TokenStream2::new());
        }
    };
    errors.finish()?;

    let krate = quote!(::privacy_pledge);
    let name = &input.ident;
    let vis = &input.vis;
    let sealed_name = sealed_name.unwrap_or_else(|| format_ident!("Sealed{}", name));
    let personal: Vec<&Field<'_>> = fields
        .iter()
        .filter(|f| matches!(f.role, Role::Personal { .. }))
        .collect();
    let first = personal[0].ident;

    let struct_doc = format!(
        " The sealed form of `{name}`: each personal field is an envelope (`Sealed<Kind, \
         Purpose>`) bound to the record's subject. Made by `Custodian::seal_record`, opened by \
         `Custodian::open_record`; generated by `#[derive(PersonalRecord)]`."
    );

    let mut columns = vec![quote! {
        #[doc = " The subject every sealed field is about."]
        #vis subject: #krate::SubjectId
    }];
    // Every column for the row constructors: `(field, type, name)`.
    let mut rows = vec![(
        format_ident!("subject"),
        quote!(#krate::SubjectId),
        "subject".to_owned(),
    )];
    let column_name = |ident: &Ident| ident.to_string().trim_start_matches("r#").to_owned();
    let mut seal_inits = Vec::new();
    let mut lookup_refs = Vec::new();
    let mut open_inits = Vec::new();
    let mut assertions = Vec::new();
    for f in &fields {
        let Field {
            ident,
            vis: fvis,
            ty,
            docs,
            role,
        } = f;
        let span = ty.span();
        // The field, spanned like its type, so that an error in a generated
        // call points at the field's type alone.
        let mut at_ty = (*ident).clone();
        at_ty.set_span(span);
        // The field's own doc comments, or `default` if it has none.
        let docs_or = |default: String| {
            if docs.is_empty() {
                quote!(#[doc = #default])
            } else {
                quote!(#(#docs)*)
            }
        };
        match role {
            Role::Personal {
                kind,
                purpose,
                lookup,
            } => {
                let docs = docs_or(format!(" The sealed `{ident}`."));
                columns.push(quote! {
                    #docs
                    #fvis #ident: #krate::Sealed<#kind, #purpose>
                });
                rows.push((
                    (*ident).clone(),
                    quote!(#krate::Sealed<#kind, #purpose>),
                    column_name(ident),
                ));
                let seal = quote_spanned! {span=>
                    ::privacy_pledge::Custodian::seal(custodian, &self.#at_ty)?
                };
                let open = quote_spanned! {span=>
                    ::privacy_pledge::Custodian::open(custodian, &self.#at_ty)?
                };
                seal_inits.push(quote!(#ident: #seal));
                open_inits.push(quote!(#ident: #open));
                if let Some(column) = lookup {
                    let doc = format!(
                        " The lookup token of `{ident}` (`#[pledge(lookup)]`): its equality \
                         index."
                    );
                    columns.push(quote! {
                        #[doc = #doc]
                        #fvis #column: #krate::LookupToken<#kind>
                    });
                    rows.push((
                        column.clone(),
                        quote!(#krate::LookupToken<#kind>),
                        column_name(column),
                    ));
                    // Spanned like the purpose: the bound it must meet is on it.
                    let pspan = purpose.span();
                    let mut at_purpose = (*ident).clone();
                    at_purpose.set_span(pspan);
                    let token = quote_spanned! {pspan=>
                        ::privacy_pledge::record::lookup_token(custodian, &self.#at_purpose)?
                    };
                    seal_inits.push(quote!(#column: #token));
                    // Spanned as `token`: a purpose without a lookup is
                    // one error, not two.
                    lookup_refs.push(quote_spanned! {pspan=>
                        ::privacy_pledge::record::lookup_ref(custodian, &self.#at_purpose, only)
                    });
                }
            }
            Role::NotPersonal => {
                // The field's type must implement `NotPersonal` (R1, R9):
                // decided on the type the compiler resolves, so a data kind
                // renamed on import or wrapped in `Option` is refused, with
                // the error on the field's type.
                assertions.push(quote_spanned! {span=>
                    const _: fn() = || {
                        fn not_personal<T: ?::core::marker::Sized + ::privacy_pledge::record::NotPersonal>() {}
                        not_personal::<#ty>();
                    };
                });
                let docs = docs_or(format!(" `{ident}`, not personal: kept as it is."));
                columns.push(quote! {
                    #docs
                    #fvis #ident: #ty
                });
                rows.push(((*ident).clone(), quote!(#ty), column_name(ident)));
                let copy = quote_spanned! {span=>
                    ::core::clone::Clone::clone(&self.#at_ty)
                };
                seal_inits.push(quote!(#ident: #copy));
                open_inits.push(quote!(#ident: #copy));
            }
        }
    }
    // The record's lookup tokens, known before it is sealed (see
    // `PersonalRecord::__lookups`); none: the trait's default.
    let lookups = (!lookup_refs.is_empty()).then(|| {
        quote! {
            fn __lookups(
                &self,
                custodian: &#krate::Custodian,
                only: &#krate::record::Only,
            ) -> ::std::vec::Vec<#krate::record::RecordLookup> {
                ::std::iter::IntoIterator::into_iter([#(#lookup_refs),*])
                    .flatten()
                    .collect()
            }
        }
    });
    let names: Vec<String> = personal
        .iter()
        .map(|f| f.ident.to_string().trim_start_matches("r#").to_owned())
        .collect();
    let idents: Vec<&Ident> = personal.iter().map(|f| f.ident).collect();
    let row_fields = rows.iter().map(|(field, _, _)| field);
    let row_types = rows.iter().map(|(_, ty, _)| ty);
    let row_names: Vec<&String> = rows.iter().map(|(_, _, name)| name).collect();

    Ok(quote! {
        #(#assertions)*

        #[doc = #struct_doc]
        #[derive(::core::clone::Clone, ::core::fmt::Debug)]
        #vis struct #sealed_name {
            #(#columns,)*
        }

        #[automatically_derived]
        impl #krate::record::PersonalRecord for #name {
            type Sealed = #sealed_name;

            fn subject(&self) -> #krate::SubjectId {
                #krate::PersonalInfo::subject(&self.#first)
            }

            fn fields(&self) -> ::std::vec::Vec<#krate::record::Field> {
                ::std::vec![#(#krate::record::Field::of(#names, &self.#idents)),*]
            }

            fn __seal(
                &self,
                custodian: &#krate::Custodian,
                _: &#krate::record::Only,
            ) -> ::core::result::Result<#sealed_name, #krate::Error> {
                ::core::result::Result::Ok(#sealed_name {
                    subject: #krate::record::PersonalRecord::subject(self),
                    #(#seal_inits,)*
                })
            }

            #lookups
        }

        #[automatically_derived]
        impl #krate::record::SealedRecord for #sealed_name {
            type Record = #name;

            const COLUMNS: &'static [&'static str] = &[#(#row_names),*];

            fn subject(&self) -> #krate::SubjectId {
                self.subject
            }

            fn fields(&self) -> ::std::vec::Vec<#krate::record::Field> {
                ::std::vec![#(#krate::record::Field::of_sealed(#names, &self.#idents)),*]
            }

            fn records(&self) -> ::std::vec::Vec<&dyn #krate::report::StoredRecord> {
                ::std::vec![#(&self.#idents as &dyn #krate::report::StoredRecord),*]
            }

            fn __open(
                &self,
                custodian: &#krate::Custodian,
                _: &#krate::record::Only,
            ) -> ::core::result::Result<#name, #krate::Error> {
                ::core::result::Result::Ok(#name {
                    #(#open_inits,)*
                })
            }
        }

        #krate::__sealed_rows! {
            #sealed_name { #(#row_fields: #row_types = #row_names),* }
        }
    })
}
