pragma SPARK_Mode (On);

package body Policy is

   function Judge_Baseline (S : Spec_Input) return Rule_Id is
   begin
      if not Rule_1 (S) then
         return 1;
      elsif not Rule_2 (S) then
         return 2;
      elsif not Rule_4 (S) then
         return 4;
      elsif not Rule_5 (S) then
         return 5;
      elsif not Rule_6 (S) then
         return 6;
      elsif not Rule_7 (S) then
         return 7;
      elsif not Rule_8 (S) then
         return 8;
      elsif not Rule_9 (S) then
         return 9;
      elsif not Rule_10 (S) then
         return 10;
      elsif not Rule_11 (S) then
         return 11;
      else
         return Allowed_Verdict;
      end if;
   end Judge_Baseline;

   function Judge_Restricted (S : Spec_Input) return Rule_Id is
   begin
      if not Rule_3 (S) then
         return 3;
      elsif not Rule_12 (S) then
         return 12;
      elsif not Rule_13 (S) then
         return 13;
      else
         return Allowed_Verdict;
      end if;
   end Judge_Restricted;

   function Judge_Vordr (S : Spec_Input) return Rule_Id is
   begin
      if not Rule_14 (S) then
         return 14;
      elsif not Rule_15 (S) then
         return 15;
      elsif not Rule_16 (S) then
         return 16;
      elsif not Rule_17 (S) then
         return 17;
      else
         return Allowed_Verdict;
      end if;
   end Judge_Vordr;

   function Validate (S : Spec_Input) return Rule_Id is
      R : Rule_Id := Judge_Baseline (S);
   begin
      if R = Allowed_Verdict then
         R := Judge_Restricted (S);
      end if;
      if R = Allowed_Verdict then
         R := Judge_Vordr (S);
      end if;
      return R;
   end Validate;

end Policy;
