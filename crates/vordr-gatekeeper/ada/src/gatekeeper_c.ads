--  The C ABI of the policy for Rust. Thin wrappers outside SPARK: they turn
--  the C input into a Spec_Input, call Validate, and catch every exception
--  (a contract failure included), so that nothing ever unwinds into Rust.
with Interfaces.C;

package Gatekeeper_C is
   pragma SPARK_Mode (Off);

   use Interfaces.C;

   --  Mirrors the Rust #[repr(C)] struct field by field; enumerations and
   --  booleans travel as unsigned chars and are checked on the way in.
   type C_Input is record
      UID                  : unsigned;
      Profile              : unsigned_char;
      Namespace_Privileged : unsigned_char;
      Network              : unsigned_char;
      Privileged           : unsigned_char;
      UID_Known            : unsigned_char;
      Userns               : unsigned_char;
      Add_All              : unsigned_char;
      Add_Sys_Admin        : unsigned_char;
      Add_Net_Admin        : unsigned_char;
      Drop_All             : unsigned_char;
      Drop_Sys_Admin       : unsigned_char;
      Drop_Net_Admin       : unsigned_char;
      Host_Network         : unsigned_char;
      Host_PID             : unsigned_char;
      Host_IPC             : unsigned_char;
      No_New_Privs         : unsigned_char;
      Seccomp              : unsigned_char;
      Read_Only_Rootfs     : unsigned_char;
      Sensitive_Mount      : unsigned_char;
      Unsafe_Sysctl        : unsigned_char;
   end record
     with Convention => C;

   --  Returns 0 (allowed), the denying rule (1 .. 8), -1 for an input out of
   --  range, -2 for any failure inside the policy.
   function Validate (Input : access constant C_Input) return int
     with Export, Convention => C, External_Name => "vordr_gatekeeper_validate";

   --  The library's version, for `vordr info`.
   function Version return int
     with Export, Convention => C, External_Name => "vordr_gatekeeper_version";
end Gatekeeper_C;
