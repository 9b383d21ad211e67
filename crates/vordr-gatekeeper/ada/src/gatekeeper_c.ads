--  The C ABI of the policy for Rust. Thin wrappers outside SPARK: they turn
--  the C input into a Spec_Input, check it is well formed (Validate's
--  precondition), call Validate, and catch every exception (a contract
--  failure included), so that nothing ever unwinds into Rust.
with Interfaces;
with Interfaces.C;

package Gatekeeper_C is
   pragma SPARK_Mode (Off);

   use Interfaces.C;

   --  Mirrors the Rust #[repr(C)] struct field by field; enumerations and
   --  booleans travel as unsigned chars and are checked on the way in;
   --  capability sets as 64-bit masks (bit N: capability N).
   type C_Input is record
      Held                 : Interfaces.Unsigned_64;
      Added                : Interfaces.Unsigned_64;
      UID                  : unsigned;
      Profile              : unsigned_char;
      Namespace_Privileged : unsigned_char;
      Network              : unsigned_char;
      Refuse_Unconfined    : unsigned_char;
      Privileged           : unsigned_char;
      UID_Known            : unsigned_char;
      Userns               : unsigned_char;
      Maps_Host_Root       : unsigned_char;
      Host_Network         : unsigned_char;
      Host_PID             : unsigned_char;
      Host_IPC             : unsigned_char;
      No_New_Privs         : unsigned_char;
      Seccomp              : unsigned_char;
      Apparmor             : unsigned_char;
      Selinux              : unsigned_char;
      Selinux_User_Role    : unsigned_char;
      Proc_Unmasked        : unsigned_char;
      Host_Path            : unsigned_char;
      Host_Port            : unsigned_char;
      Unsafe_Sysctl        : unsigned_char;
      Devices              : unsigned_char;
      Bad_Unified_Key      : unsigned_char;
      Log_Outside          : unsigned_char;
   end record
     with Convention => C;

   --  Returns 0 (allowed), the denying rule (1 .. Policy.Last_Rule), -1 for
   --  an input out of range or not well formed, -2 for any failure inside
   --  the policy.
   function Validate (Input : access constant C_Input) return int
     with Export, Convention => C, External_Name => "vordr_gatekeeper_validate";

   --  The library's version, for `vordr info`.
   function Version return int
     with Export, Convention => C, External_Name => "vordr_gatekeeper_version";

   --  The highest rule number, so that Rust can check it knows every rule.
   function Rule_Count return int
     with Export, Convention => C, External_Name => "vordr_gatekeeper_rule_count";
end Gatekeeper_C;
